"""``agentos doctor``'s sandbox checks: bubblewrap starts a sandbox here, and a cgroup can hold the limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentos.cli.doctor import Check

if TYPE_CHECKING:
    from agentos.config import SandboxConfig

__all__ = ["check_sandbox"]


def check_sandbox(cfg: SandboxConfig) -> list[Check]:
    """``sandbox``: an error when ``mode: bubblewrap`` and bwrap cannot run (no attempt would start), a warning
    when the sandbox is off or no cgroup can hold the memory and process limits (they are skipped)."""
    from agentos.runners import cgroups
    from agentos.runners.sandbox import INSTALL_HINT, probe

    if cfg.mode == "off":
        fix = f"set sandbox.mode: bubblewrap ({INSTALL_HINT})"
        return [Check("sandbox", "warn", "sandbox.mode is off: agents, hooks and tests run unconfined", fix)]
    problem = probe()
    if problem is not None:
        return [Check("sandbox", "error", "bubblewrap cannot run here: no attempt will start", problem)]
    checks = [Check("sandbox", "ok", "bubblewrap starts a sandbox (no network, private HOME and /tmp)")]
    limits = cgroups.unavailable_reason()
    if limits is not None:
        fix = "give the daemon a writable cgroup (systemd: Delegate=yes; or cgroup v1 memory and pids hierarchies)"
        checks.append(Check("sandbox:limits", "warn", f"{limits}: memory and process limits are skipped", fix))
    else:
        what = f"memory {cfg.memory_mb} MiB, {cfg.max_processes} processes per attempt"
        checks.append(Check("sandbox:limits", "ok", what))
    return checks
