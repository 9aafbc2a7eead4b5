"""The files of an attempt's run directory (``runs/<task>/<attempt>/``) that later steps read back.

``agent.log`` (its tail judges the run), ``start_sha`` (where an interrupted attempt started, so its unproven
commits can be taken back), and the result files of earlier attempts (the next prompt quotes them).
"""

from __future__ import annotations

import os
from pathlib import Path

from agentos.agents.prompt import PriorAttempt
from agentos.graph import Attempt, Task
from agentos.notices import safe_id

START_FILE = "start_sha"  # in the run dir: the branch tip the attempt started from


def attempt_dir(state_dir: Path, task: Task, attempt: Attempt) -> Path:
    """An attempt's run directory: the one it recorded, else ``runs/<safe id>/<attempt>/`` under ``state_dir``."""
    return Path(attempt.run_dir or state_dir / "runs" / safe_id(task.id) / str(attempt.number))


def read_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of ``path`` as text ("" when it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def read_start(run_dir: Path) -> str | None:
    """The branch tip the attempt of ``run_dir`` started from, when it was recorded."""
    try:
        sha = (run_dir / START_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return sha or None


def prior_attempts(task: Task, result_file: str) -> list[PriorAttempt]:
    """Every attempt of ``task`` before the current one, with the result file it left, for the next prompt."""
    prior = []
    for a in task.attempts[:-1]:
        text = ""
        if a.run_dir:
            path = Path(a.run_dir) / result_file
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")[:20_000]
        prior.append(
            PriorAttempt(
                number=a.number,
                agent=a.agent,
                outcome=a.outcome,
                blocker_code=a.blocker_code,
                result_text=text,
                patch_path=a.patch_path,
                error=a.error[-3000:],  # a CI report (PR monitor) is up to 3000 characters
            )
        )
    return prior
