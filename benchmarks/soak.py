"""A soak: the service under a mixed workload for a long time, memory watched (not CI).

The service is started as ``make run`` starts it (:func:`benchmarks.launch.run_service`,
``serve_config.yaml``, allowed to fetch the loopback photos of 127.0.0.1), and C=16
closed-loop clients (aiohttp) send, for ``--minutes`` (30 by default), a mix of:

- ``unique``: ``GET /predictions?url=`` of a new URL and new bytes every request (the
  512-px set of :mod:`benchmarks.photos`);
- ``repeat``: the same photo every time (what the response cache answers);
- ``upload``: ``POST /predictions`` of a photo's bytes, new bytes every request;
- ``batch``: ``POST /predictions/batch`` of 4 new URLs;
- ~10 % bad inputs, in turn: a URL that answers 404, a text file named ``.jpg``, a PNG
  past ``max_image_pixels`` (8200 x 8000), and a loopback address the service is not
  allowed to fetch (127.0.0.2: forbidden, never connected to).

Every minute it prints the requests per second, the answers by status and error type
(a batch's items too), and each process's PSS by role (``benchmarks.procs``), and
whether a replica process was replaced. At the end, the bar: after the first
``--warmup-minutes`` (5) the whole service's PSS grows at most 5 %, no replica was
restarted, and every answer was a 200 or the contract's error (JSON ``{"error":
{"type", "detail"}}`` of a type in ``imagetagger.errors.ERROR_TABLE``).

Usage::

    .venv/bin/python -m benchmarks.soak                      # 30 minutes
    .venv/bin/python -m benchmarks.soak --minutes 4 --warmup-minutes 1
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.launch import ROOT, run_service
from benchmarks.photos import (
    LOOPBACK,
    Photo,
    PhotoServer,
    build_unique_set,
    unique_body,
)
from benchmarks.procs import marked_pids, process_pss, process_role
from imagetagger.errors import ERROR_TABLE

CONCURRENCY = 16
BATCH_SIZE = 4
MiB = 2**20
PSS_GROWTH_BAR = 0.05
REPLICA_ROLES = ("ImageTagger", "Downloader", "ModelDeployment")
FORBIDDEN_HOST = "127.0.0.2"  # loopback, but not in the service's allowed networks

#: (kind, weight): the workload's mix; the four bad kinds make 10 % of it.
MIX: tuple[tuple[str, float], ...] = (
    ("unique", 35.0),
    ("repeat", 20.0),
    ("upload", 15.0),
    ("batch", 20.0),
    ("missing", 2.5),
    ("not_image", 2.5),
    ("oversized", 2.5),
    ("forbidden", 2.5),
)
BAD_KINDS = frozenset({"missing", "not_image", "oversized", "forbidden"})
NOT_IMAGE = "not-an-image.jpg"
OVERSIZED = "oversized-8200x8000.png"


def kinds(seed: int = 0) -> Iterator[str]:
    """An endless, reproducible sequence of request kinds drawn from :data:`MIX`."""
    rng = random.Random(seed)
    names = [name for name, _ in MIX]
    weights = [weight for _, weight in MIX]
    while True:
        yield rng.choices(names, weights)[0]


def outcome(status: int, body: bytes) -> str:
    """``"200"``, ``"<status> <error type>"`` for the contract's errors, else
    ``"<status> NOT-CONTRACT"``."""
    if status == 200:
        return "200"
    try:
        error = json.loads(body)["error"]
    except (ValueError, TypeError, KeyError):
        return f"{status} NOT-CONTRACT"
    if (
        isinstance(error, dict)
        and set(error) == {"type", "detail"}
        and error["type"] in ERROR_TABLE
        and isinstance(error["detail"], str)
    ):
        return f"{status} {error['type']}"
    return f"{status} NOT-CONTRACT"


def batch_item_outcomes(body: bytes) -> list[str]:
    """Each item of a 200 batch answer: ``"item ok"`` or ``"item <error type>"``."""
    found = []
    for item in json.loads(body)["results"]:
        if "error" in item:
            error = item["error"]
            ok = isinstance(error, dict) and error.get("type") in ERROR_TABLE
            found.append(f"item {error['type'] if ok else 'NOT-CONTRACT'}")
        else:
            found.append("item ok" if item.get("predictions") else "item NOT-CONTRACT")
    return found


def is_contract(key: str) -> bool:
    """Does an outcome key (of :func:`outcome`, :func:`batch_item_outcomes` or a
    client-side failure) count as a 200 or the contract's error?"""
    return "NOT-CONTRACT" not in key and not key.startswith("client ")


@dataclass
class Minute:
    """What one minute saw."""

    index: int
    seconds: float
    answers: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    pss_by_role: dict[str, int] = field(default_factory=dict)
    restarted: tuple[str, ...] = ()

    @property
    def requests(self) -> int:
        return sum(self.answers.values())

    @property
    def pss_total(self) -> int:
        return sum(self.pss_by_role.values())

    def line(self) -> str:
        rate = self.requests / self.seconds if self.seconds > 0 else 0.0
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items()))
        items = ", ".join(f"{k}: {v}" for k, v in sorted(self.items.items()))
        roles = ", ".join(
            f"{role} {pss / MiB:.0f}"
            for role, pss in sorted(self.pss_by_role.items(), key=lambda kv: -kv[1])
        )
        restarted = ", ".join(self.restarted) or "none"
        return (
            f"minute {self.index}: {rate:.1f} req/s ({self.requests} answers) | {answers}"
            f" | batch items: {items or '-'} | PSS {self.pss_total / MiB:.0f} MiB: {roles}"
            f" | replicas restarted: {restarted}"
        )


def pss_growth(totals: Sequence[int], warmup_minutes: int) -> float | None:
    """Growth of the PSS total after the warm-up: (largest later - at the warm-up's end)
    over the latter; None when the run ended before the warm-up did."""
    if len(totals) <= warmup_minutes or warmup_minutes < 1:
        return None
    base = totals[warmup_minutes - 1]
    return (max(totals[warmup_minutes:]) - base) / base


def replaced(before: Mapping[str, set[int]], now: Mapping[str, set[int]]) -> list[str]:
    """Replica roles one of whose processes of ``before`` is gone in ``now`` (a restart;
    a replica added by autoscaling is not one)."""
    return sorted(role for role, pids in before.items() if pids - now.get(role, set()))


@dataclass
class Verdict:
    growth: float | None
    restarts: int
    not_contract: int

    @property
    def passed(self) -> bool:
        grew_ok = self.growth is not None and self.growth <= PSS_GROWTH_BAR
        return grew_ok and self.restarts == 0 and self.not_contract == 0

    def line(self, warmup_minutes: int) -> str:
        growth = "n/a (shorter than the warm-up)" if self.growth is None else f"{self.growth:+.1%}"
        return (
            f"bar: PSS growth after minute {warmup_minutes}: {growth} (<= "
            f"{PSS_GROWTH_BAR:.0%}); replica restarts: {self.restarts}; answers neither 200 "
            f"nor the contract's error: {self.not_contract} -> "
            f"{'PASS' if self.passed else 'FAIL'}"
        )


def verdict(minutes: Sequence[Minute], warmup_minutes: int) -> Verdict:
    not_contract = sum(
        count
        for minute in minutes
        for counts in (minute.answers, minute.items)
        for key, count in counts.items()
        if not is_contract(key)
    )
    return Verdict(
        pss_growth([m.pss_total for m in minutes], warmup_minutes),
        sum(len(m.restarted) for m in minutes),
        not_contract,
    )


# --------------------------------------------------------------------- the service


def extra_photos() -> tuple[Photo, ...]:
    """The bad inputs the photo server serves: a text file and a too-large PNG."""
    from PIL import Image

    text = Photo(NOT_IMAGE, b"plain text, not an image\n", 0, 0, "image/jpeg")
    buffer = io.BytesIO()
    Image.new("1", (8200, 8000)).save(buffer, "PNG")  # 65.6 MP, ~10 KB
    return (text, Photo(OVERSIZED, buffer.getvalue(), 8200, 8000, "image/png"))


def processes(token: str) -> tuple[dict[str, int], dict[str, set[int]]]:
    """PSS by role, and the pids of each replica role, of the service's processes."""
    pss: dict[str, int] = {}
    replicas: dict[str, set[int]] = {}
    for pid in marked_pids(token):
        try:
            role, size = process_role(pid), process_pss(pid)
        except OSError:
            continue
        if len(role) > 40 or not role.replace("_", "").replace(".", "").replace(" ", "").isalnum():
            role = "other"  # a command line procs.role_of cannot name (a code string)
        pss[role] = pss.get(role, 0) + size
        if role in REPLICA_ROLES:
            replicas.setdefault(role, set()).add(pid)
    return pss, replicas


class Workload:
    """Turns a kind into a request against ``base_url``, with the photo server's URLs."""

    def __init__(self, base_url: str, photos: PhotoServer, unique: Sequence[Photo]) -> None:
        self.base_url = base_url
        self.urls = photos.workload("unique")
        self.repeat_url = f"{photos.base_url}/{unique[0].name}"
        self.unique = unique
        self.photo_base = photos.base_url
        port = photos.base_url.rsplit(":", 1)[1]
        self.forbidden_url = f"http://{FORBIDDEN_HOST}:{port}/a.jpg"
        self._uploads = itertools.count()

    def request(self, kind: str) -> tuple[str, str, dict[str, Any]]:
        """(method, url, aiohttp keyword arguments)."""
        predictions = f"{self.base_url}/predictions"
        if kind == "upload":
            count = next(self._uploads)
            photo = self.unique[count % len(self.unique)]
            form = aiohttp.FormData()
            form.add_field("file", unique_body(photo.data, count), filename="p.jpg")
            return "POST", predictions, {"data": form}
        if kind == "batch":
            urls = [next(self.urls) for _ in range(BATCH_SIZE)]
            return "POST", predictions + "/batch", {"json": {"urls": urls}}
        url = {
            "unique": lambda: next(self.urls),
            "repeat": lambda: self.repeat_url,
            "missing": lambda: f"{self.photo_base}/no-such-photo.jpg",
            "not_image": lambda: f"{self.photo_base}/{NOT_IMAGE}",
            "oversized": lambda: f"{self.photo_base}/{OVERSIZED}",
            "forbidden": lambda: self.forbidden_url,
        }[kind]()
        return "GET", predictions, {"params": {"url": url}}


async def soak(
    workload: Workload, token: str, *, minutes: int, concurrency: int, seed: int
) -> list[Minute]:
    kind_source = kinds(seed)
    current = Minute(1, 0.0)
    done: list[Minute] = []
    stop_at = time.monotonic() + 60 * minutes

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop_at:
            kind = next(kind_source)
            method, url, kwargs = workload.request(kind)
            items: list[str] = []
            try:
                async with session.request(method, url, **kwargs) as response:
                    body = await response.read()
                    key = outcome(response.status, body)
                    if kind == "batch" and response.status == 200:
                        items = batch_item_outcomes(body)
            except (TimeoutError, aiohttp.ClientError) as exc:
                key = f"client {type(exc).__name__}"
            current.answers[key] += 1  # in the minute it was answered
            current.items.update(items)

    async def reporter() -> None:
        nonlocal current
        _, replicas = processes(token)
        while len(done) < minutes:
            started = time.monotonic()
            await asyncio.sleep(max(0.0, min(60.0, stop_at - started)))
            finished, current = current, Minute(current.index + 1, 0.0)
            finished.seconds = time.monotonic() - started
            finished.pss_by_role, now = processes(token)
            finished.restarted = tuple(replaced(replicas, now))
            replicas = now
            done.append(finished)
            print(finished.line(), flush=True)

    timeout = aiohttp.ClientTimeout(total=90)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(reporter(), *(client(session) for _ in range(concurrency)))
    return done


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Soak the service with a mixed workload.")
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--warmup-minutes", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the minutes here")
    args = parser.parse_args(argv)
    if args.minutes < 1 or args.warmup_minutes < 0 or args.concurrency < 1:
        parser.error("--minutes and --concurrency must be >= 1, --warmup-minutes >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    unique = build_unique_set()
    with (
        tempfile.TemporaryDirectory(prefix="imagetagger-soak-") as workdir,
        PhotoServer(unique + extra_photos(), host=LOOPBACK) as photos,
        run_service(args.config, Path(workdir), name="soak") as server,
    ):
        print(
            f"soak: {args.minutes} min at c={args.concurrency} against {server.base_url} "
            f"({args.config.name}); mix {dict(MIX)}",
            flush=True,
        )
        workload = Workload(server.base_url, photos, unique)
        minutes = asyncio.run(
            soak(
                workload,
                server.token,
                minutes=args.minutes,
                concurrency=args.concurrency,
                seed=args.seed,
            )
        )
    result = verdict(minutes, args.warmup_minutes)
    print(result.line(args.warmup_minutes), flush=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "minute": m.index,
                        "seconds": round(m.seconds, 1),
                        "answers": dict(m.answers),
                        "batch_items": dict(m.items),
                        "pss_mib": {k: round(v / MiB, 1) for k, v in m.pss_by_role.items()},
                        "restarted": list(m.restarted),
                    }
                    for m in minutes
                ],
                indent=2,
            )
        )
    sys.exit(0 if result.passed else 1)


if __name__ == "__main__":
    main()
