"""A Debian machine booted with a real systemd (``systemd-nspawn --boot``) for tests/system.

The root is a minimal Debian made once with ``debootstrap`` and cached OUTSIDE the clone
(``$AGENTOS_SYSTEMD_ROOT``, default /var/cache/agentos-test/debian-root: ``make test-systemd`` builds it).
It boots with ``--volatile=overlay``, so every write lands in a tmpfs and the cached root stays clean.
Commands run inside with ``nsenter`` into the container's PID 1. Never boot systemd in a plain pid
namespace on the host: its boot-time tmpfiles clean-up would empty the host's /tmp.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.waiting import NotYet, wait_until

ROOT = Path(os.environ.get("AGENTOS_SYSTEMD_ROOT", "/var/cache/agentos-test/debian-root"))
PIP_CACHE = ROOT.parent / "pip-cache"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unavailable() -> str | None:
    """Why no machine can boot here, or None when one can."""
    if os.geteuid() != 0:
        return "booting a container needs root"
    for tool in ("systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install systemd-container util-linux)"
    if not (ROOT / "usr/lib/systemd/systemd").exists() and not (ROOT / "lib/systemd/systemd").exists():
        return f"no cached Debian root at {ROOT}: `make test-systemd` builds it (debootstrap, once)"
    return None


class Machine:
    """One booted container: :meth:`sh` runs a shell command inside it as root."""

    def __init__(self, name: str, binds: dict[Path, str], log: Path) -> None:
        PIP_CACHE.mkdir(parents=True, exist_ok=True)
        args = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--volatile=overlay", "--quiet"]
        args += ["-D", str(ROOT), f"--machine={name}", f"--bind={PIP_CACHE}:/root/.cache/pip"]
        args += [f"--bind-ro={host}:{inside}" for host, inside in binds.items()]
        if CA_BUNDLE.is_file():  # this machine's CAs (a TLS-inspecting proxy's too): pip inside reaches PyPI
            args.append(f"--bind-ro={CA_BUNDLE}:{CA_BUNDLE}")
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        self.pid = wait_until(self._init_pid, what="the container's systemd to start", timeout=60)
        wait_until(self._booted, what="the container to finish booting", timeout=120, context=self.tail)

    def _init_pid(self) -> int | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited {self.proc.returncode}: {self.tail()}")
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0]) if children else None

    def _booted(self) -> bool:
        state = self.sh("systemctl is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return True
        raise NotYet(state)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def sh(self, command: str, *, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``command`` with /bin/sh inside the machine (as root, a clean login environment)."""
        args = ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-p", "-C", "-r", "-w", "--"]
        args += ["/usr/bin/env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8", "/bin/sh", "-c", command]
        res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise AssertionError(f"`{command}` exited {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def close(self) -> None:
        if self.proc.poll() is None:
            self.sh("systemctl poweroff", check=False, timeout=30)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
