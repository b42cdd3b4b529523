"""`make bench`: the Serve app against the bare pipeline and a naive server, side by side.

For each model, one run measures:

a. the bare pipeline in-process: model images/s at its best batch size on decoded
   inputs, single-image latency, and decode + crop time per photo (mean over the photo
   set); the serial ceiling is ``1 / (1 / model_img_s + decode_s_per_photo)`` req/s;
b. the Serve app (``serve run`` of a temporary copy of ``serve_config.yaml`` with the
   model, a free loopback port and ``allowed_networks: ["127.0.0.1/32"]``) under
   closed-loop load at each concurrency: req/s, p50/p95/p99, errors;
c. ``naive_server.py`` (one uvicorn process, batch-1 inference) under the same load;
d. memory of each as PSS summed over all its processes (the whole Ray tree for Serve).

The photo set (``photos.py``) is served from 127.0.0.1; requests cycle through it.
Only one server runs at a time. Results are printed as markdown and written to
``benchmarks/results/<date>-<model>[-quick].{md,json}``.

Usage::

    python -m benchmarks.bench_service                          # lite2 and lite0, full
    python -m benchmarks.bench_service --models efficientnet_lite0 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.model_throughput import format_machine, machine_info, time_model, time_prepare
from benchmarks.photos import (
    LOOPBACK,
    Photo,
    PhotoServer,
    build_photo_set,
    free_port,
    wait_until_ok,
)
from benchmarks.serve_smoke import LoadResult, format_result, prediction_url, run_load

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = ("efficientnet_lite2", "efficientnet_lite0")
MARKER = "IMAGETAGGER_BENCH_RUN"  # environment variable that tags every process we start
GIB = 2**30

# Targets printed next to the figures.
CEILING_FRACTION = 0.8  # service req/s at c=32 >= 0.8 x bare ceiling
NAIVE_FACTOR = 2.0  # service req/s at c=32 >= 2 x naive
LATENCY_SLACK_MS = 15.0  # service p50 at c=1 <= bare batch-1 inference + decode + 15 ms
PSS_LIMIT_BYTES = 3 * GIB
TARGET_CONCURRENCY = 32


@dataclass(frozen=True)
class Settings:
    concurrencies: tuple[int, ...]
    duration_s: float
    warmup_s: float
    batch_sizes: tuple[int, ...]
    model_seconds: float
    prepare_repeats: int
    top: int
    quick: bool


# --------------------------------------------------------------------------- processes


def _read_proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


def marked_pids(token: str) -> list[int]:
    """Live processes whose environment carries ``MARKER=token`` (all of one server's tree).

    Every process a server starts (Ray's GCS, raylet, dashboard, workers, replicas)
    inherits the environment, so this finds the whole tree even after re-parenting.
    """
    needle = f"{MARKER}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if needle in _read_proc(int(entry), "environ").split(b"\0"):
                found.append(int(entry))
        except OSError:  # gone, or not ours
            continue
    return sorted(found)


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
    """PSS of every process of one server, summed."""
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


def _wait_gone(token: str, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (alive := marked_pids(token)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def kill_marked(token: str, grace_s: float = 10.0) -> list[str]:
    """End whatever is left of one server's processes; returns those that had to be killed.

    Ray's helpers exit on their own shortly after the driver, so they get ``grace_s``
    first; the rest get SIGTERM, then SIGKILL. Only processes carrying this run's token
    are touched, never another user's Ray instance.
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


def stop_process(process: subprocess.Popen, first_signal: int, wait_s: float) -> None:
    """``first_signal`` (for a graceful stop), then SIGKILL when it does not end in time."""
    if process.poll() is not None:
        return
    process.send_signal(first_signal)
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class RunningServer:
    """A server under test: where it answers and how to find its processes."""

    name: str
    base_url: str
    token: str
    process: subprocess.Popen
    log_path: Path


@contextmanager
def _server_process(
    name: str, command: list[str], port: int, workdir: Path, extra_env: dict[str, str]
) -> Iterator[RunningServer]:
    """Start ``command`` (marked, in its own session), wait for ``GET /``, stop it after."""
    token = uuid.uuid4().hex
    env = {**os.environ, **extra_env, MARKER: token}
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the terminal reaches only the bench
        )
    server = RunningServer(name, f"http://{LOOPBACK}:{port}", token, process, log_path)
    try:
        try:
            wait_until_ok(server.base_url + "/", timeout_s=600, process=process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{name} did not start: {exc}\n{log_tail(log_path)}") from exc
        yield server
    finally:
        # serve run shuts Serve and its local Ray instance down on SIGINT.
        graceful = signal.SIGINT if name == "service" else signal.SIGTERM
        stop_process(process, graceful, wait_s=90)
        leftovers = kill_marked(token)
        if leftovers:
            print(f"  killed leftover {name} processes: {leftovers}", flush=True)


def service_config(source: Path, *, model: str, port: int) -> dict[str, Any]:
    """``serve_config.yaml`` for the bench: the model, a loopback port, loopback images allowed."""
    config = yaml.safe_load(source.read_text())
    config["http_options"] = {**(config.get("http_options") or {}), "host": LOOPBACK, "port": port}
    applications = config.get("applications") or []
    if len(applications) != 1:
        raise ValueError(f"{source}: expected one application, found {len(applications)}")
    application = applications[0]
    application["args"] = {**(application.get("args") or {}), "model": model}
    downloader = [d for d in application.get("deployments", []) if d.get("name") == "Downloader"]
    if not downloader:
        raise ValueError(f"{source}: no Downloader deployment to allow loopback image URLs")
    user_config = downloader[0].setdefault("user_config", {})
    user_config["allowed_networks"] = [f"{LOOPBACK}/32"]
    return config


@contextmanager
def run_service(model: str, config_source: Path, workdir: Path) -> Iterator[RunningServer]:
    """``serve run`` on a private, new local Ray instance (never an existing cluster)."""
    port = free_port()
    config_path = workdir / f"serve-{model}.yaml"
    config_path.write_text(yaml.safe_dump(service_config(config_source, model=model, port=port)))
    ray_tmp = Path(tempfile.mkdtemp(prefix="itb-", dir="/tmp"))  # short: Ray's socket paths
    serve_bin = Path(sys.executable).with_name("serve")
    # As `make run` starts it: throughput mode for the proxy and controller as well.
    env = {
        "RAY_ADDRESS": "local",
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_USE_GRPC_BY_DEFAULT": "0",
    }
    try:
        with _server_process(
            "service", [str(serve_bin), "run", str(config_path)], port, workdir, env
        ) as server:
            yield server
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


@contextmanager
def run_naive(model: str, workdir: Path) -> Iterator[RunningServer]:
    port = free_port()
    script = ROOT / "benchmarks" / "naive_server.py"
    command = [sys.executable, str(script), "--host", LOOPBACK, "--port", str(port)]
    with _server_process("naive", [*command, "--model", model], port, workdir, {}) as server:
        yield server


# --------------------------------------------------------------------------- measurements


def measure_bare(model: str, photos: Sequence[Photo], settings: Settings) -> dict[str, Any]:
    """Model images/s on decoded inputs, batch-1 latency, and decode + crop per photo."""
    from imagetagger.models import load_classifier

    classifier = load_classifier(model)
    spec = classifier.spec
    timings = [
        time_model(classifier, b, min_time_s=settings.model_seconds, max_iterations=500)
        for b in sorted({1, *settings.batch_sizes})  # batch 1 gives the latency target
    ]
    decode_s = [
        time_prepare(p.data, spec.input_size, spec.crop_padding, repeats=settings.prepare_repeats)
        for p in photos
    ]
    del classifier
    gc.collect()

    best = max(timings, key=lambda t: t.images_per_s)
    batch1_s = next(t.median_s for t in timings if t.batch_size == 1)
    decode_mean_s = statistics.fmean(decode_s)
    return {
        "input_size": spec.input_size,
        "batches": {t.batch_size: round(t.images_per_s, 2) for t in timings},
        "best_batch": best.batch_size,
        "model_img_s": round(best.images_per_s, 2),
        "batch1_ms": round(1000 * batch1_s, 2),
        "decode_ms_mean": round(1000 * decode_mean_s, 2),
        "decode_ms": {p.name: round(1000 * s, 2) for p, s in zip(photos, decode_s, strict=True)},
        "ceiling_req_s": round(1.0 / (1.0 / best.images_per_s + decode_mean_s), 2),
    }


def warm_up(server: RunningServer, photo_urls: Sequence[str], top: int) -> None:
    """One request per photo must succeed before load starts (first calls trace graphs)."""
    result = asyncio.run(
        run_load(server.base_url, photo_urls, concurrency=1, requests=len(photo_urls), top=top)
    )
    if result.errors:
        probe = prediction_url(server.base_url, photo_urls[0], top)
        raise RuntimeError(
            f"{server.name} warm-up failed: {dict(result.outcomes)} (e.g. {probe})\n"
            f"{log_tail(server.log_path)}"
        )


def measure_load(
    server: RunningServer, photo_urls: Sequence[str], settings: Settings
) -> dict[str, Any]:
    """Load at each concurrency (warm-up run discarded), memory sampled after each level."""
    warm_up(server, photo_urls, settings.top)
    levels: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    for concurrency in settings.concurrencies:
        if settings.warmup_s > 0:
            asyncio.run(
                run_load(
                    server.base_url,
                    photo_urls,
                    concurrency=concurrency,
                    duration_s=settings.warmup_s,
                    top=settings.top,
                )
            )
        result: LoadResult = asyncio.run(
            run_load(
                server.base_url,
                photo_urls,
                concurrency=concurrency,
                duration_s=settings.duration_s,
                top=settings.top,
            )
        )
        print(f"  {server.name} {format_result(result)}", flush=True)
        levels.append(result.summary())
        memory.append(memory_snapshot(server.token))
    peak = max(memory, key=lambda m: m["pss_bytes"])
    return {"levels": levels, "memory": peak}


# --------------------------------------------------------------------------- report


def _level(measured: dict[str, Any] | None, concurrency: int) -> dict[str, Any] | None:
    if not measured:
        return None
    return next((lv for lv in measured["levels"] if lv["concurrency"] == concurrency), None)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def evaluate_targets(
    bare: dict[str, Any], service: dict[str, Any] | None, naive: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The four targets, each with its verdict and the numbers behind it."""
    s32 = _level(service, TARGET_CONCURRENCY)
    n32 = _level(naive, TARGET_CONCURRENCY)
    s1 = _level(service, 1)
    targets = []

    need = CEILING_FRACTION * bare["ceiling_req_s"]
    got = s32["req_per_s"] if s32 else None
    targets.append(
        {
            "target": f"service req/s at c={TARGET_CONCURRENCY} >= {CEILING_FRACTION} x ceiling",
            "value": got,
            "threshold": round(need, 2),
            "verdict": _verdict(None if got is None else got >= need),
        }
    )
    need = NAIVE_FACTOR * n32["req_per_s"] if n32 else None
    targets.append(
        {
            "target": f"service req/s at c={TARGET_CONCURRENCY} >= {NAIVE_FACTOR} x naive",
            "value": got,
            "threshold": None if need is None else round(need, 2),
            "verdict": _verdict(None if got is None or need is None else got >= need),
        }
    )
    need = bare["batch1_ms"] + bare["decode_ms_mean"] + LATENCY_SLACK_MS
    p50 = s1["p50_ms"] if s1 else None
    targets.append(
        {
            "target": f"service p50 at c=1 <= batch-1 inference + decode + {LATENCY_SLACK_MS:g} ms",
            "value": p50,
            "threshold": round(need, 1),
            "verdict": _verdict(None if p50 is None else p50 <= need),
        }
    )
    pss = service["memory"]["pss_bytes"] if service else None
    targets.append(
        {
            "target": f"service PSS <= {PSS_LIMIT_BYTES / GIB:g} GiB",
            "value": None if pss is None else round(pss / GIB, 3),
            "threshold": PSS_LIMIT_BYTES / GIB,
            "verdict": _verdict(None if pss is None else pss <= PSS_LIMIT_BYTES),
        }
    )
    return targets


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    bare, service, naive = report["bare"], report["service"], report["naive"]
    s = report["settings"]
    lines = [
        f"## {report['model']} ({bare['input_size']}x{bare['input_size']}) - {report['date']}"
        + (" (quick run)" if s["quick"] else ""),
        "",
        f"Bare pipeline, in-process: model {bare['model_img_s']:.1f} img/s at batch "
        f"{bare['best_batch']} (batch 1: {bare['batch1_ms']:.1f} ms); decode + crop "
        f"{bare['decode_ms_mean']:.1f} ms per photo (mean of {len(bare['decode_ms'])}); "
        f"ceiling {bare['ceiling_req_s']:.2f} req/s.",
        "",
        "| c | service req/s | p50 ms | p95 ms | p99 ms | errors | naive req/s | p50 ms "
        "| p95 ms | p99 ms | errors | service/ceiling | service/naive |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in s["concurrencies"]:
        sv, nv = _level(service, concurrency), _level(naive, concurrency)
        cells = [str(concurrency)]
        for level in (sv, nv):
            cells += [
                _fmt(level and level["req_per_s"], ".2f"),
                _fmt(level and level["p50_ms"], ".0f"),
                _fmt(level and level["p95_ms"], ".0f"),
                _fmt(level and level["p99_ms"], ".0f"),
                "-" if level is None else str(level["errors"]),
            ]
        service_rps = sv["req_per_s"] if sv else None
        cells.append(_ratio(service_rps, bare["ceiling_req_s"]))
        cells.append(_ratio(service_rps, nv["req_per_s"] if nv else None))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for label, measured in (("service", service), ("naive", naive)):
        if measured:
            mem = measured["memory"]
            lines.append(
                f"Memory, {label}: PSS {mem['pss_bytes'] / 2**20:.0f} MiB over "
                f"{mem['processes']} processes (peak of the samples after each level)."
            )
    lines += ["", "| target | value | threshold | verdict |", "|---|---:|---:|---|"]
    for target in report["targets"]:
        lines.append(
            f"| {target['target']} | {_fmt(target['value'], '.2f')} | "
            f"{_fmt(target['threshold'], '.2f')} | {target['verdict']} |"
        )
    lines += [
        "",
        f"Load: closed loop, {s['duration_s']:g} s per level after a {s['warmup_s']:g} s "
        f"warm-up, photos round-robin ({report['photos']} photos, 256x256 to 4000x3000), "
        f"top={s['top']}.",
        format_machine(report["machine"]),
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if report["settings"]["quick"] else ""
    stem = RESULTS_DIR / f"{report['date']}-{report['model']}{suffix}"
    stem.with_suffix(".md").write_text(render_markdown(report))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return stem.with_suffix(".md")


# --------------------------------------------------------------------------- driver


def bench_model(
    model: str,
    photo_server: PhotoServer,
    settings: Settings,
    *,
    config_source: Path,
    workdir: Path,
    with_service: bool,
    with_naive: bool,
) -> dict[str, Any]:
    print(f"[{model}] bare pipeline", flush=True)
    bare = measure_bare(model, photo_server.photos, settings)
    print(f"  {json.dumps({k: v for k, v in bare.items() if k != 'decode_ms'})}", flush=True)
    naive = service = None
    if with_naive:
        print(f"[{model}] naive server", flush=True)
        with run_naive(model, workdir) as server:
            naive = measure_load(server, photo_server.urls, settings)
    if with_service:
        print(f"[{model}] service (serve run)", flush=True)
        with run_service(model, config_source, workdir) as server:
            service = measure_load(server, photo_server.urls, settings)
    report = {
        "model": model,
        "date": datetime.date.today().isoformat(),
        "settings": {
            "concurrencies": list(settings.concurrencies),
            "duration_s": settings.duration_s,
            "warmup_s": settings.warmup_s,
            "batch_sizes": list(settings.batch_sizes),
            "top": settings.top,
            "quick": settings.quick,
            "serve_config": str(config_source),
        },
        "photos": len(photo_server.photos),
        "machine": machine_info(),
        "bare": bare,
        "service": service,
        "naive": naive,
    }
    report["targets"] = evaluate_targets(bare, service, naive)
    return report


def _raise_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the clean-up of every started server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve app vs bare pipeline vs naive server.")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per level")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each level")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="short run: fewer, shorter levels")
    parser.add_argument("--no-service", action="store_true", help="skip the Serve app")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive server")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    quick = args.quick
    settings = Settings(
        concurrencies=tuple(args.concurrency or ((1, 8, 32) if quick else (1, 8, 32, 64))),
        duration_s=args.duration or (5.0 if quick else 15.0),
        warmup_s=args.warmup if args.warmup is not None else (2.0 if quick else 5.0),
        batch_sizes=(1, 16) if quick else (1, 8, 16, 32),
        model_seconds=1.0 if quick else 3.0,
        prepare_repeats=3 if quick else 10,
        top=args.top,
        quick=quick,
    )
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    from imagetagger.tfconfig import configure_tensorflow

    configure_tensorflow()
    outputs = []
    with (
        tempfile.TemporaryDirectory(prefix="imagetagger-bench-") as workdir,
        PhotoServer(build_photo_set()) as photo_server,
    ):
        for model in args.models:
            report = bench_model(
                model,
                photo_server,
                settings,
                config_source=args.config,
                workdir=Path(workdir),
                with_service=not args.no_service,
                with_naive=not args.no_naive,
            )
            print()
            print(render_markdown(report), flush=True)
            if not args.no_write:
                outputs.append(write_report(report))
    for path in outputs:
        print(f"wrote {path.relative_to(ROOT)} (and .json)")


if __name__ == "__main__":
    main()
