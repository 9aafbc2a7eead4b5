"""A real multi-node Ray cluster on this machine, for tests/e2e/test_ray_loop.py and bench/ray.py.

Every node is ``ray start --block`` in a session of its own: a head (no ``agentos`` resource, so no attempt runs
there) and worker nodes with the resources given. Each is a real raylet with its own worker processes; killing a
worker's process group is a node dying. Bound to 127.0.0.1 as far as Ray allows (``--node-ip-address``; Ray
still reports the machine's address), usage stats off, no dashboard, a capped object store, a temp dir of its
own. :meth:`RayCluster.stop` kills every group it started (never ``ray stop``: that stops every cluster of the
user on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).with_name("ray")
ROOT = Path(__file__).resolve().parents[1]
STARTED = "Ray runtime started"
START_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    resources: dict[str, float]
    node_id: str = ""


@dataclass
class RayCluster:
    root: Path
    port: int = 0
    nodes: dict[str, Node] = field(default_factory=dict)
    temp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="agentos-ray-", dir="/tmp")))
    """Ray's session folder (sockets: a short path) and the nodes' TMPDIR (the attempts' clones), removed by stop."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Set in every node's environment (an agent's ``pass_env`` reads the node's own: its API key lives there)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The nodes' environment: this one's (so workers import these sources), a HOME with a git identity."""
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        (home / ".gitconfig").write_text("[user]\n\tname = ray node\n\temail = node@agentos.invalid\n")
        src = str(ROOT / "src")
        path = os.environ.get("PYTHONPATH", "")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "GIT_", "FAKE_AGENT_"))}
        env.update(
            HOME=str(home),
            PYTHONPATH=f"{src}:{path}" if path else src,
            TMPDIR=str(self.temp / "tmp"),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_health_check_period_ms="500",  # a dead node is noticed in seconds, not half a minute
            RAY_health_check_failure_threshold="3",
            RAY_health_check_initial_delay_ms="0",
        )
        return env | self.extra_env

    def _start(self, name: str, args: list[str], resources: dict[str, float]) -> Node:
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(BIN),
                    "start",
                    "--block",
                    "--node-ip-address=127.0.0.1",
                    "--num-cpus=1",
                    "--object-store-memory=80000000",
                    "--disable-usage-stats",
                    *args,
                ],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.root,
            )
        node = Node(name, proc, log, resources)
        self.nodes[name] = node
        deadline = time.monotonic() + START_S
        while STARTED not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        return node

    def start(self, workers: dict[str, dict[str, float]]) -> None:
        self.port = free_port()
        (self.temp / "tmp").mkdir(exist_ok=True)
        self._start(
            "head",
            ["--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={self.temp / 'ray'}"],
            {},
        )
        for name, resources in workers.items():
            self.add_worker(name, resources)

    def add_worker(self, name: str, resources: dict[str, float]) -> Node:
        """A worker node offering ``resources`` (and ``tnode_<name>``, by which the tests tell nodes apart)."""
        offered = {**resources, f"tnode_{name}": 1}
        return self._start(name, [f"--address={self.address}", f"--resources={json.dumps(offered)}"], resources)

    def learn_node_ids(self) -> None:
        """Each worker's Ray node id (by its resources), read by a throwaway driver."""
        code = (
            f"import json, ray; ray.init(address={self.address!r}, log_to_driver=False);"
            "print(json.dumps([[n['NodeID'], n['Resources']] for n in ray.nodes() if n['Alive']]))"
        )
        done = subprocess.run([sys.executable, "-c", code], env=self.env(), capture_output=True, text=True, timeout=120)
        rows = json.loads(done.stdout.strip().splitlines()[-1])
        for node_id, res in rows:
            for name, node in self.nodes.items():
                if f"tnode_{name}" in res:
                    node.node_id = node_id

    def kill(self, name: str) -> None:
        """The node dies: its raylet, its object store and its worker processes, all at once (SIGKILL)."""
        node = self.nodes[name]
        try:
            os.killpg(node.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGKILL every node's process group (a SIGTERMed raylet may wait for its dead head for minutes)."""
        for node in self.nodes.values():
            try:
                os.killpg(node.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            node.proc.wait(timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)
