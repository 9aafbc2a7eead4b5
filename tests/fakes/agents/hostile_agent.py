#!/usr/bin/env python3
"""A hostile ``command`` agent: ``hostile_agent.py`` tries the attack ``HOSTILE_ATTACK`` names, then reports.

Stdlib only (it runs under the system interpreter inside a sandbox). ``HOSTILE_TARGET`` is the path (or
``host:port``, or pid) the attack aims at. It prints one line ``HOSTILE <attack>: GOT <what it got>`` when the
attack worked and ``HOSTILE <attack>: DENIED <why>`` when it did not, and exits 0 either way (a memory attack
that the kernel kills prints nothing more).

Attacks: ``read`` (print the target file), ``list`` (list the target folder), ``write`` (create the target
file), ``kill`` (SIGTERM the target pid), ``ptrace`` (PTRACE_ATTACH to the target pid), ``connect`` (TCP to
``host:port``), ``proxy`` (``CONNECT`` to each of the comma-separated ``host:port`` targets through the
proxy ``$HTTPS_PROXY`` names, twice each; ``GOT`` when any answered through it), ``unix`` (connect to the
unix socket at the target), ``fork`` (start as many sleeping children as it can, up to 200, and report how
many), ``memory`` (allocate 16 MiB blocks up to 1 GiB, touching every page), ``fill_tmp`` (write to ``/tmp``
until the disk is full, up to 256 MiB, and report how much), ``symlink`` (plant a symlink to the target in the
working directory and read, or list, through it), ``git`` (run ``git`` with the target's words: ``RAN exit N``,
the host's git says whether it worked), ``memory_child`` (``memory`` in a child process: ``DENIED``
when the kernel killed it).

**All at once**: with a file argument (``hostile_agent.py probes.txt``), or ``HOSTILE_ATTACK=all`` and the prompt
on stdin, it runs every probe of the first ``HOSTILE-PROBES: [[name, attack, target], ...]`` line it finds (JSON)
and prints ``PROBE <name>: GOT …`` / ``PROBE <name>: DENIED …`` for each, then ``PROBES DONE``. It exits 1 when
any probe got through (a hostile test command then fails the tests), else 0.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

MIB = 1024 * 1024


def attack(name: str, target: str) -> str:
    """``GOT …`` or ``DENIED …``."""
    try:
        if name == "read":
            with open(target, encoding="utf-8", errors="replace") as f:
                return "GOT " + f.read(200).replace("\n", " ")
        if name == "list":
            return "GOT " + ",".join(sorted(os.listdir(target)))
        if name == "write":
            with open(target, "w", encoding="utf-8") as f:
                f.write("hostile was here\n")
            return "GOT wrote " + target
        if name == "kill":
            os.kill(int(target), signal.SIGTERM)
            return f"GOT signalled {target}"
        if name == "ptrace":
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.ptrace(16, int(target), None, None) == 0:  # PTRACE_ATTACH
                return f"GOT traced {target}"
            return f"DENIED ptrace errno {ctypes.get_errno()}"
        if name == "connect":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=3) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return "GOT " + conn.recv(100).decode("utf-8", "replace")
        if name == "proxy":
            return through_proxy(target.split(","))
        if name == "unix":
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(target)
                return f"GOT connected to {target}"
        if name == "fork":
            return fork_bomb()
        if name == "memory":
            blocks = []
            for _ in range(64):
                blocks.append(bytearray(16 * MIB))  # zero-filled: every page is touched
            return f"GOT {len(blocks) * 16} MiB"
        if name == "fill_tmp":
            return fill_tmp()
        if name == "symlink":
            link = f"hostile-link-{os.getpid()}-{len(os.listdir('.'))}"
            os.symlink(target, link)
            try:
                return attack("list" if os.path.isdir(link) else "read", link)
            finally:
                os.unlink(link)
        if name == "memory_child":
            return in_child("memory", target)
        if name == "git":
            done = subprocess.run(["git", *target.split()], capture_output=True, text=True, timeout=60)
            return f"RAN exit {done.returncode}: {(done.stdout + done.stderr).strip()[-200:]}"
    except OSError as exc:
        return f"DENIED {type(exc).__name__}: {exc}"
    return f"DENIED unknown attack {name!r}"


def in_child(name: str, target: str) -> str:
    """Run ``attack(name)`` in a child process: ``DENIED`` when a signal ended it before it could answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        os.write(write_end, attack(name, target).encode()[:400])
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"DENIED killed by signal {os.WTERMSIG(status)}"
    return answer


def all_probes(text: str) -> int:
    """Every probe of the ``HOSTILE-PROBES:`` line in ``text``; 1 when any got through."""
    line = next((ln for ln in text.splitlines() if ln.strip().startswith("HOSTILE-PROBES:")), "")
    probes = json.loads(line.split("HOSTILE-PROBES:", 1)[1]) if line else []
    got = False
    for name, kind, target in probes:
        try:
            answer = attack(kind, str(target))
        except Exception as exc:  # a probe that broke is no probe that worked
            answer = f"DENIED {type(exc).__name__}: {exc}"
        got = got or answer.startswith("GOT")
        print(f"PROBE {name}: {answer}", flush=True)
    print(f"PROBES DONE {len(probes)}", flush=True)
    return 1 if got or not probes else 0


def fork_bomb() -> str:
    children = []
    try:
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        result = f"DENIED after {len(children)} forks: {exc}"
    else:
        result = f"GOT {len(children)} forks"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return result


def fill_tmp() -> str:
    written = 0
    try:
        with open("/tmp/hostile-fill", "wb") as f:
            while written < 256 * MIB:
                f.write(b"\0" * MIB)
                f.flush()
                written += MIB
    except OSError as exc:
        return f"DENIED after {written // MIB} MiB: {exc}"
    finally:
        try:
            os.unlink("/tmp/hostile-fill")
        except OSError:
            pass
    return f"GOT {written // MIB} MiB"


def through_proxy(targets: list[str]) -> str:
    """``CONNECT`` each target twice through ``$HTTPS_PROXY`` and send a request; report every answer."""
    proxy = os.environ.get("HTTPS_PROXY", "")
    host, _, port = proxy.removeprefix("http://").rstrip("/").rpartition(":")
    if not host:
        return "DENIED no HTTPS_PROXY"
    seen = []
    for target in targets * 2:
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            status = conn.recv(200).decode("utf-8", "replace").split("\r\n")[0]
            if " 200 " in status + " ":
                conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                status += " | " + conn.recv(100).decode("utf-8", "replace").strip()
            seen.append(f"{target} {status}")
    got = any(" 200 " in s for s in seen)
    return ("GOT " if got else "DENIED ") + "; ".join(seen)


def main() -> int:
    name = os.environ.get("HOSTILE_ATTACK", "")
    if len(sys.argv) > 1:
        with open(sys.argv[1], encoding="utf-8") as f:
            return all_probes(f.read())
    if name == "all":
        return all_probes(sys.stdin.read())
    print(f"HOSTILE {name}: {attack(name, os.environ.get('HOSTILE_TARGET', ''))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
