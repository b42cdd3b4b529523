"""Finding, measuring and ending one benchmark server's processes by their marker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from benchmarks.launch import check_listeners
from benchmarks.procs import (
    MARKER,
    cpu_ms_per_request,
    cpu_seconds,
    kill_marked,
    listening_pids,
    marked_pids,
    memory_snapshot,
    role_of,
)


def test_roles_of_ray_serve_and_python_processes() -> None:
    cases = {
        (b"ray::ServeReplica:imagetagger:Downloader",): "Downloader",
        (b"ray::ServeController.listen_for_change",): "ServeController",
        (b"ray::ServeController",): "ServeController",
        (b"/usr/sbin/haproxy", b"-f", b"x.cfg"): "haproxy",
        (b"/v/bin/python3", b"/v/bin/serve", b"run", b"c.yaml"): "serve",
        (b"/v/bin/python", b"-u", b"/v/lib/dashboard.py", b"--x"): "dashboard.py",
        (b"/v/bin/python3.11", b"-m", b"benchmarks.photos", b"serve"): "photos",
        (b"/v/bin/python", b"-u", b"-c", b"import sys; print(sys.path)"): "python -c",
    }
    for argv, role in cases.items():
        assert role_of(list(argv)) == role, argv


def test_cpu_per_request_sums_a_role_and_counts_new_processes() -> None:
    before = {1: ("Downloader", 1.0), 2: ("Downloader", 2.0), 3: ("raylet", 5.0)}
    after = {1: ("Downloader", 1.5), 2: ("Downloader", 2.5), 3: ("raylet", 5.0), 4: ("new", 0.2)}
    assert cpu_ms_per_request(before, after, 100) == {"Downloader": 10.0, "new": 2.0}


def test_marked_processes_are_found_measured_and_ended() -> None:
    token = uuid.uuid4().hex
    env = {**os.environ, MARKER: token}
    # A parent that starts a child and exits: the child is re-parented, still marked.
    sleeper = "import time; time.sleep(60)"
    code = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {sleeper!r}])"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    survivor = subprocess.Popen([sys.executable, "-c", sleeper], env=env)
    try:
        pids = marked_pids(token)
        assert survivor.pid in pids and len(pids) == 2
        assert os.getpid() not in pids
        assert set(cpu_seconds(token)) == set(pids)
        memory = memory_snapshot(token)
        assert memory["processes"] == 2 and memory["pss_bytes"] > 0
        killed = kill_marked(token, grace_s=0.5)
        assert len(killed) == 2
        assert marked_pids(token) == []
    finally:
        survivor.kill()
        survivor.wait()


def test_listeners_of_a_port_are_found_and_must_be_the_runs_own() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert listening_pids(port) == {os.getpid()}
        # This test process carries no run's marker: the port is someone else's.
        with pytest.raises(RuntimeError, match="not ours alone"):
            check_listeners("server", port, uuid.uuid4().hex)
    assert listening_pids(port) == set()
    with pytest.raises(RuntimeError, match="not ours alone"):
        check_listeners("server", port, uuid.uuid4().hex)  # nobody listens at all


def test_a_marked_listener_passes() -> None:
    token = uuid.uuid4().hex
    code = (
        "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "print(s.getsockname()[1], flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], env={**os.environ, MARKER: token}, stdout=subprocess.PIPE
    )
    try:
        port = int(child.stdout.readline())
        assert listening_pids(port) == {child.pid}
        check_listeners("server", port, token)
    finally:
        child.kill()
        child.wait()


def test_unmarked_descendants_of_a_marked_process_count_too() -> None:
    # Ray's dashboard starts its modules from a forkserver with an environment of its
    # own: they carry no marker, but they are the server's memory all the same.
    token = uuid.uuid4().hex
    sleeper = "import time; time.sleep(60)"
    spawn = (
        "import subprocess, sys, time; "
        f"subprocess.Popen([sys.executable, '-c', {sleeper!r}], env={{}}); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", spawn], env={**os.environ, MARKER: token})
    try:
        deadline = time.monotonic() + 10
        while len(marked_pids(token)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = marked_pids(token)
        assert parent.pid in pids and len(pids) == 2
        child = next(pid for pid in pids if pid != parent.pid)
        with open(f"/proc/{child}/environ", "rb") as environ:
            assert MARKER.encode() not in environ.read()
    finally:
        kill_marked(token, grace_s=0.5)
        parent.kill()
        parent.wait()
