"""The processes of one server under test: find them, measure them, stop them.

Every process a benchmark starts carries ``IMAGETAGGER_BENCH_RUN=<token>`` in its
environment. Ray's GCS, raylet, dashboard, workers and replicas inherit it, so
:func:`marked_pids` finds a server's whole tree (re-parented or not), and only that
tree: nothing here ever touches another user's Ray instance (no ``ray stop``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from imagetagger.serving.processes import descendants

MARKER = "IMAGETAGGER_BENCH_RUN"  # environment variable that tags every process we start
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: CPU seconds by pid, each with the process's role.
CpuSample = dict[int, tuple[str, float]]


def _read_proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


def marked_pids(token: str) -> list[int]:
    """Live processes of one server: those whose environment carries ``MARKER=token``,
    and every descendant of theirs (Ray's dashboard starts its modules from a
    forkserver with an environment of its own: they carry no marker, ~20 MiB each)."""
    needle = f"{MARKER}={token}".encode()
    marked: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            zombie = _read_proc(int(entry), "stat").rsplit(b")", 1)[1].split()[0] == b"Z"
            if not zombie and needle in _read_proc(int(entry), "environ").split(b"\0"):
                marked.add(int(entry))
        except (OSError, IndexError):  # gone, or not ours
            continue
    return sorted(marked | set(descendants(*marked))) if marked else []


def process_pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split between their users)."""
    for line in _read_proc(pid, "smaps_rollup").decode().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no Pss line for pid {pid}")


def process_name(pid: int) -> str:
    try:
        argv = _read_proc(pid, "cmdline").split(b"\0")
        return b" ".join(argv[:3]).decode(errors="replace")[:80] or f"[{pid}]"
    except OSError:
        return f"[{pid}]"


def memory_snapshot(token: str) -> dict[str, Any]:
    """PSS of every process of one server, summed (the 12 largest listed)."""
    processes = []
    for pid in marked_pids(token):
        try:
            processes.append({"pid": pid, "pss": process_pss(pid), "name": process_name(pid)})
        except OSError:
            continue
    processes.sort(key=lambda p: p["pss"], reverse=True)
    return {
        "pss_bytes": sum(p["pss"] for p in processes),
        "processes": len(processes),
        "top": processes[:12],
    }


def process_role(pid: int) -> str:
    """What a process is, for the CPU table: a Serve deployment, a Ray daemon, HAProxy."""
    try:
        argv = _read_proc(pid, "cmdline").split(b"\0")
    except OSError:
        return "?"
    return role_of(argv)


def role_of(argv: list[bytes]) -> str:
    """The role of a command line (see :func:`process_role`)."""
    title = argv[0].decode(errors="replace")
    if title.startswith("ray::"):  # Ray's worker processes retitle themselves
        # "ServeController.listen_for_change": the actor, without the method it runs now
        title = title.removeprefix("ray::").split()[0].split(".", 1)[0]
        return title.rsplit(":", 1)[-1] if title.startswith("ServeReplica") else title
    if title.startswith("ray-dashboard-"):  # a dashboard module: "ray-dashboard-JobHead-0 (...)"
        return title.split()[0].rsplit("-", 1)[0]
    name = Path(title).name
    if not name.startswith("python"):
        return name
    args = iter(argv[1:])
    for arg in args:  # the interpreter's own options, then what it runs
        if arg == b"-c":
            return f"{name} -c"
        if arg == b"-m":
            module = next(args, b"").decode(errors="replace")
            return module.rsplit(".", 1)[-1][:32] or name
        if arg and not arg.startswith(b"-"):
            return Path(arg.decode(errors="replace")).name
    return name


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of one process (``/proc/PID/stat``)."""
    fields = _read_proc(pid, "stat").rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat(5)


def cpu_seconds(token: str) -> CpuSample:
    """User + system CPU seconds so far of every process of one server, with its role."""
    found = {}
    for pid in marked_pids(token):
        try:
            found[pid] = (process_role(pid), process_cpu_seconds(pid))
        except OSError:
            continue
    return found


def cpu_ms_per_request(before: CpuSample, after: CpuSample, requests: int) -> dict[str, float]:
    """CPU milliseconds per answered request, by role (processes of one role summed)."""
    by_role: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        spent = seconds - before.get(pid, (role, 0.0))[1]
        by_role[role] = by_role.get(role, 0.0) + spent
    return {
        role: round(1000 * spent / max(requests, 1), 2)
        for role, spent in sorted(by_role.items(), key=lambda item: -item[1])
        if spent > 0
    }


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(fields[9])
    return inodes


def listening_pids(port: int) -> set[int]:
    """Every process with a socket listening on TCP ``port``.

    More than one can listen on a port (SO_REUSEPORT, which HAProxy sets): a server
    that answers on its port is only ours when every listener is.
    """
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found = set()
    if not targets:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                    found.add(int(entry))
                    break
            except OSError:
                continue
    return found


def _wait_gone(token: str, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (alive := marked_pids(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def kill_marked(token: str, grace_s: float = 10.0) -> list[str]:
    """End whatever is left of one server's processes; returns those that had to be killed.

    Ray's helpers exit on their own shortly after the process that started them, so
    they get ``grace_s`` first; the rest get SIGTERM, then SIGKILL. Only processes
    carrying this run's token are touched.
    """
    leftovers = _wait_gone(token, grace_s)
    names = [f"{pid} {process_name(pid)}" for pid in leftovers]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_pids(token):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if not _wait_gone(token, grace_s):
            break
    return names


def stop_process(process: subprocess.Popen, first_signal: int, wait_s: float) -> float:
    """``first_signal`` (a graceful stop), then SIGKILL when it does not end in time.

    Returns the seconds it took to exit after the first signal.
    """
    if process.poll() is not None:
        return 0.0
    started = time.monotonic()
    process.send_signal(first_signal)
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - started


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
