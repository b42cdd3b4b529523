"""``imagetagger serve`` for real: only the service port reachable, JSON at every moment.

Two instances of their own (private RAY_TMPDIR, the tree under test on PYTHONPATH),
started as ``make run`` and the container start them, beside any other Ray on the
machine (the session's cluster is not used):

- the local default (serve_config.yaml, loopback): from the moment the process starts,
  ``GET /`` and ``GET /predictions`` are polled every 0.2 s until it serves and again
  through a Ctrl-C until it exits, and every answer must be the contract's JSON (a 503
  with ``Retry-After`` while not ready); every listening TCP socket of its process tree
  (``/proc/net/tcp*`` and ``/proc/<pid>/fd``) must be on loopback, and a connection to
  each port at this host's own non-loopback addresses must be refused;
- ``--host 0.0.0.0`` (what the container's IMAGETAGGER_HOST does): the same, but for
  exactly one socket, HAProxy's service port, on all interfaces.

The connections to this host's own addresses are the one exception to loopback-only
test traffic: they never leave the machine, and no byte is sent on them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from imagetagger.serving.processes import descendants
from tests import servers
from tests.service.helpers import ROOT
from tests.sockets import (
    Listener,
    accepting_listeners,
    listeners,
    own_addresses,
    socket_inodes,
)

START_TIMEOUT_S = 600
POLL_INTERVAL_S = 0.2
INSTANCE_ENV_PREFIXES = ("RAY_SERVE_HAPROXY_", "RAY_SERVE_FALLBACK_PROXY_", "RAY_SERVE_DIRECT_")
# An upload-free request that reaches the Downloader and needs no network: loopback
# is forbidden (403 ForbiddenURL) once the service is up.
PATHS = ("/", "/predictions?url=http://127.0.0.1/cat.jpg")


@dataclass
class Answer:
    """One poll: when, what, and the answer (status None: no connection)."""

    at: float
    path: str
    status: int | None
    content_type: str = ""
    retry_after: str | None = None
    body: str = ""


@dataclass
class Poller:
    """GET ``PATHS`` every 0.2 s on ``base_url`` until stopped, recording every answer."""

    base_url: str
    answers: list[Answer] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        self.stopping.set()
        self._thread.join(timeout=30)
        return self.answers

    def _run(self) -> None:
        with requests.Session() as session:
            while not self.stopping.is_set():
                for path in PATHS:
                    self.answers.append(self._get(session, path))
                self.stopping.wait(POLL_INTERVAL_S)

    def _get(self, session: requests.Session, path: str) -> Answer:
        at = time.monotonic()
        try:
            response = session.get(self.base_url + path, timeout=10)
        except requests.RequestException:
            return Answer(at, path, None)
        return Answer(
            at,
            path,
            response.status_code,
            response.headers.get("content-type", ""),
            response.headers.get("retry-after"),
            response.text,
        )


def assert_contract_json(answer: Answer) -> None:
    """A 200 of the route, or the contract's error shape (503s with Retry-After)."""
    assert answer.content_type == "application/json", answer
    body = json.loads(answer.body)
    if answer.status == 200:
        assert answer.path == "/" and {"description", "version", "revision"} <= set(body)
        return
    assert set(body) == {"error"} and set(body["error"]) == {"type", "detail"}, answer
    if answer.status == 503:
        assert body["error"]["type"] == "Overloaded", answer
        assert answer.retry_after is not None and int(answer.retry_after) >= 1, answer
    else:  # up: loopback URLs are forbidden
        assert (answer.status, body["error"]["type"]) == (403, "ForbiddenURL"), answer


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    ray_tmp: str
    started_at: float
    poller: Poller

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tree(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def imagetagger_serve(*extra: str) -> Iterator[Instance]:
    """``imagetagger serve --config serve_config.yaml`` of this tree, polled from its start."""
    port = servers.unused_port("127.0.0.1")
    ray_tmp = tempfile.mkdtemp(prefix="itl-", dir="/tmp")  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(INSTANCE_ENV_PREFIXES)}
    env.pop("RAY_ADDRESS", None)
    env.pop("IMAGETAGGER_HOST", None)
    env["RAY_TMPDIR"] = ray_tmp
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    log = Path(ray_tmp) / "serve.log"
    command = [sys.executable, "-m", "imagetagger.cli", "serve"]
    command += ["--config", str(ROOT / "serve_config.yaml"), "--port", str(port), *extra]
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    instance = Instance(
        process, port, log, ray_tmp, time.monotonic(), Poller(f"http://127.0.0.1:{port}").start()
    )
    try:
        yield instance
    finally:
        instance.poller.stop()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        subprocess.run(["rm", "-rf", ray_tmp], check=False)


def wait_serving(instance: Instance) -> None:
    """Until ``GET /`` answers 200 (the poller keeps a record of everything before)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not any(a.status == 200 for a in instance.poller.answers):
        assert instance.process.poll() is None, instance.output()
        assert time.monotonic() < deadline, "not serving in time\n" + instance.output()
        time.sleep(0.5)
    time.sleep(2)  # a few answers more once up


def assert_only_reachable(instance: Instance, opened: set[int]) -> list[Listener]:
    """No socket of the tree but ``opened`` ports off loopback; the rest refused from
    this host's own addresses (a refusal by someone else's socket there is ignored)."""
    found = listeners(instance.tree())
    assert found, "no listening socket found: /proc unreadable?"
    exposed = sorted(str(s) for s in found if not s.loopback and s.port not in opened)
    assert exposed == [], exposed
    assert {s.port for s in found if not s.loopback} == opened, found
    addresses = own_addresses()
    if not addresses:
        pytest.skip("this host has no non-loopback address to connect from")
    ours = set().union(*(socket_inodes(pid) for pid in instance.tree()))
    for address in addresses:
        for listener in found:
            accepted = _connects(address, listener.port)
            reached_ours = bool(accepting_listeners(address, listener.port) & ours)
            if listener.port in opened:
                # Reachable where it binds (0.0.0.0: this host's IPv4 addresses).
                assert accepted == reached_ours, (address, str(listener))
            else:
                assert not (accepted and reached_ours), (address, str(listener))
    return found


def _connects(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect((host, port))
        except OSError:
            return False
        return True


def test_local_default_listens_on_loopback_and_answers_json_from_start_to_stop() -> None:
    with imagetagger_serve() as instance:
        wait_serving(instance)
        starting = instance.poller.stop()
        found = assert_only_reachable(instance, opened=set())
        print(f"{len(found)} listening sockets, all on loopback:", *map(str, found), sep="\n  ")

        stopping = Poller(instance.base_url).start()
        time.sleep(1)
        os.killpg(instance.process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        status = instance.process.wait(timeout=60)
        time.sleep(0.5)
        stopping.stop()
        assert status == 0, instance.output()

    answered = [a for a in starting if a.status is not None]
    assert answered, "nothing answered while starting"
    not_ready = [a for a in answered if a.status == 503]
    print(f"start: {len(starting)} polls, {len(not_ready)} JSON 503s before ready")
    for answer in answered:
        assert_contract_json(answer)
    # Once the port answered, it kept answering until the service was up.
    first = starting.index(answered[0])
    assert all(a.status is not None for a in starting[first:]), starting[first:]
    stop_answers = [a for a in stopping.answers if a.status is not None]
    assert stop_answers, "nothing answered after the Ctrl-C"
    for answer in stop_answers:
        assert_contract_json(answer)
    print(f"stop: {len(stopping.answers)} polls, {len(stop_answers)} answered, all JSON")


def test_host_opens_the_service_port_and_nothing_else() -> None:
    with imagetagger_serve("--host", "0.0.0.0") as instance:
        wait_serving(instance)
        answers = instance.poller.stop()
        found = assert_only_reachable(instance, opened={instance.port})
        (public,) = [s for s in found if not s.loopback]
        assert (public.host, public.process) == ("0.0.0.0", "haproxy"), str(public)
        ipv4 = [address for address in own_addresses() if ":" not in address]
        assert all(_connects(address, instance.port) for address in ipv4), ipv4
    for answer in answers:
        if answer.status is not None:
            assert_contract_json(answer)
