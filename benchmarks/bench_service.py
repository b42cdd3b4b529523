"""`make bench`: the Serve app against the bare pipeline and a naive server, side by side.

For each model, one run measures:

a. the bare pipeline in-process, in TensorFlow (its best batch size) and in the served
   runtime (the serve config's runtime args, as many threads as it has interpreters):
   model images/s on decoded inputs, single-image latency, and decode + crop time per
   photo (mean over the photo set); each ceiling is
   ``1 / (1 / model_img_s + decode_s_per_photo)`` req/s;
b. the Serve app (``serve run`` of a temporary copy of ``serve_config.yaml`` with the
   model, a free loopback port and ``allowed_networks: ["127.0.0.1/32"]``, in the
   serving environment ``imagetagger serve`` gives it) under closed-loop load at each
   concurrency: req/s, p50/p95/p99, errors;
c. ``naive_server.py`` (one uvicorn process, TensorFlow batch-1 inference) under the
   same load;
d. memory of each as PSS summed over all its processes (the whole Ray tree for Serve),
   and CPU milliseconds per request of each process (``/proc/PID/stat``), by role.

The photo set (``photos.py``) is served from 127.0.0.1; requests cycle through it.
Only one server runs at a time. Results are printed as markdown and written to
``benchmarks/results/<date>-<model>[-quick].{md,json,png}`` (the plot: req/s and p50
against concurrency).

Usage::

    python -m benchmarks.bench_service                          # lite2, float32 and int8
    python -m benchmarks.bench_service --models efficientnet_lite0 --quick
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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

from benchmarks.model_throughput import (
    concurrent_images_per_s,
    format_machine,
    machine_info,
    time_model,
    time_prepare,
)
from benchmarks.photos import (
    LOOPBACK,
    Photo,
    PhotoServer,
    build_photo_set,
    free_port,
    wait_until_ok,
)
from benchmarks.serve_smoke import LoadResult, format_result, prediction_url, run_load
from imagetagger.models.runtimes import RuntimeOptions
from imagetagger.serving_env import SERVING_ENV, isolated_haproxy_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = ("efficientnet_lite2",)
DEFAULT_PRECISIONS = ("float32", "int8")
MARKER = "IMAGETAGGER_BENCH_RUN"  # environment variable that tags every process we start
GIB = 2**30

# Targets printed next to the figures (issue 9).
CEILING_FRACTION = 0.8  # service req/s at c=32 >= 0.8 x the bare TensorFlow ceiling
NAIVE_FACTOR = 1.2  # service req/s at c=32 >= 1.2 x naive
LATENCY_SLACK_MS = 5.0  # service p50 at c=1 <= naive p50 at c=1 + 5 ms
PSS_LIMIT_BYTES = int(1.5 * GIB)
TARGET_CONCURRENCY = 32
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def process_role(pid: int) -> str:
    """What a process is, for the CPU table: a Serve deployment, a Ray daemon, HAProxy."""
    try:
        argv = _read_proc(pid, "cmdline").split(b"\0")
    except OSError:
        return "?"
    title = argv[0].decode(errors="replace")
    if title.startswith("ray::"):  # Ray's worker processes retitle themselves
        title = title.removeprefix("ray::").split()[0]
        return title.rsplit(":", 1)[-1] if title.startswith("ServeReplica") else title
    name = Path(title).name
    if name.startswith("python") and len(argv) > 1:
        if argv[1] in (b"-c", b"-m"):
            return f"{name} {argv[1].decode()} {argv[2].decode()[:24] if argv[1] == b'-m' else ''}"
        script = next((a.decode() for a in argv[1:] if a and not a.startswith(b"-")), name)
        return Path(script).name
    return name


def cpu_seconds(token: str) -> dict[int, tuple[str, float]]:
    """User + system CPU seconds so far of every process of one server, with its role."""
    found = {}
    for pid in marked_pids(token):
        try:
            fields = _read_proc(pid, "stat").rsplit(b")", 1)[1].split()
        except OSError:
            continue
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
        found[pid] = (process_role(pid), (utime + stime) / CLOCK_TICKS)
    return found


def cpu_ms_per_request(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], requests: int
) -> dict[str, float]:
    """CPU milliseconds per answered request, by role (processes of one role summed)."""
    by_role: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        spent = seconds - before.get(pid, (role, 0.0))[1]
        by_role[role] = by_role.get(role, 0.0) + spent
    per_request = {
        role: round(1000 * spent / max(requests, 1), 2)
        for role, spent in sorted(by_role.items(), key=lambda item: -item[1])
        if spent > 0
    }
    return per_request


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
def run_service(
    model: str, config_source: Path, workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[RunningServer]:
    """``serve run`` on a private, new local Ray instance (never an existing cluster)."""
    port = free_port()
    config_path = workdir / f"serve-{model}.yaml"
    config_path.write_text(yaml.safe_dump(service_config(config_source, model=model, port=port)))
    ray_tmp = Path(tempfile.mkdtemp(prefix="itb-", dir="/tmp"))  # short: Ray's socket paths
    serve_bin = Path(sys.executable).with_name("serve")
    # As `make run` (imagetagger serve) starts it, with HAProxy's files kept private.
    haproxy_dir = ray_tmp / "haproxy"
    haproxy_dir.mkdir()
    env = {
        **SERVING_ENV,
        **isolated_haproxy_env(str(haproxy_dir)),
        "RAY_ADDRESS": "local",
        "RAY_TMPDIR": str(ray_tmp),
        **(extra_env or {}),
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


def served_runtime(config_source: Path) -> RuntimeOptions:
    """The runtime options the serve config's application args ask for."""
    from deployments.app import AppArgs

    config = yaml.safe_load(config_source.read_text())
    return AppArgs.model_validate(config["applications"][0].get("args") or {}).runtime_options()


def measure_bare(
    model: str, options: RuntimeOptions, photos: Sequence[Photo], settings: Settings
) -> dict[str, Any]:
    """Model images/s on decoded inputs, batch-1 latency, and decode + crop per photo.

    TensorFlow runs one call at a time at each batch size (the best is kept); LiteRT
    runs batch 1 from as many threads as the options have interpreters, as served.
    """
    from imagetagger.models.runtimes import load_model

    classifier = load_model(model, options)
    spec = classifier.spec
    batch1 = time_model(classifier, 1, min_time_s=settings.model_seconds, max_iterations=500)
    if options.runtime == "litert":
        workers = options.interpreters
        batches = {
            1: concurrent_images_per_s(classifier, 1, workers, min_time_s=settings.model_seconds)
        }
    else:
        workers = 1
        batches = {1: batch1.images_per_s} | {
            b: time_model(
                classifier, b, min_time_s=settings.model_seconds, max_iterations=500
            ).images_per_s
            for b in sorted(set(settings.batch_sizes) - {1})
        }
    decode_s = [
        time_prepare(p.data, spec.input_size, spec.crop_padding, repeats=settings.prepare_repeats)
        for p in photos
    ]
    del classifier
    gc.collect()

    best_batch = max(batches, key=lambda b: batches[b])
    model_img_s = batches[best_batch]
    decode_mean_s = statistics.fmean(decode_s)
    return {
        "runtime": options.runtime,
        "options": dataclasses.asdict(options),
        "workers": workers,
        "input_size": spec.input_size,
        "batches": {b: round(rate, 2) for b, rate in batches.items()},
        "best_batch": best_batch,
        "model_img_s": round(model_img_s, 2),
        "batch1_ms": round(1000 * batch1.median_s, 2),
        "decode_ms_mean": round(1000 * decode_mean_s, 2),
        "decode_ms": {p.name: round(1000 * s, 2) for p, s in zip(photos, decode_s, strict=True)},
        "ceiling_req_s": round(1.0 / (1.0 / model_img_s + decode_mean_s), 2),
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
        cpu_before, own_before = cpu_seconds(server.token), os.times()
        result: LoadResult = asyncio.run(
            run_load(
                server.base_url,
                photo_urls,
                concurrency=concurrency,
                duration_s=settings.duration_s,
                top=settings.top,
            )
        )
        cpu_after, own_after = cpu_seconds(server.token), os.times()
        print(f"  {server.name} {format_result(result)}", flush=True)
        level = result.summary()
        level["cpu_ms_per_request"] = cpu_ms_per_request(cpu_before, cpu_after, result.ok)
        own_s = sum(own_after[:2]) - sum(own_before[:2])
        level["load_generator_cpu_ms_per_request"] = round(1000 * own_s / max(result.ok, 1), 2)
        levels.append(level)
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


def _target(
    label: str, value: float | None, threshold: float | None, ok: bool | None
) -> dict[str, Any]:
    return {
        "target": label,
        "value": None if value is None else round(value, 3),
        "threshold": None if threshold is None else round(threshold, 3),
        "verdict": _verdict(ok),
    }


def evaluate_targets(
    bare_tf: dict[str, Any],
    bare_served: dict[str, Any],
    service: dict[str, Any] | None,
    naive: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The targets of issue 9, each with its verdict and the numbers behind it."""
    c = TARGET_CONCURRENCY
    s32, n32 = _level(service, c), _level(naive, c)
    s1, n1 = _level(service, 1), _level(naive, 1)
    got = s32["req_per_s"] if s32 else None

    def at_least(need: float | None) -> bool | None:
        return None if got is None or need is None else got >= need

    need_naive = NAIVE_FACTOR * n32["req_per_s"] if n32 else None
    need_tf = CEILING_FRACTION * bare_tf["ceiling_req_s"]
    p50 = s1["p50_ms"] if s1 else None
    need_p50 = n1["p50_ms"] + LATENCY_SLACK_MS if n1 else None
    pss = service["memory"]["pss_bytes"] / GIB if service else None
    served = bare_served["runtime"]
    return [
        _target(
            f"service req/s at c={c} >= {NAIVE_FACTOR} x naive",
            got,
            need_naive,
            at_least(need_naive),
        ),
        _target(
            f"service req/s at c={c} >= {CEILING_FRACTION} x bare tensorflow ceiling",
            got,
            need_tf,
            at_least(need_tf),
        ),
        _target(
            f"service p50 at c=1 <= naive p50 at c=1 + {LATENCY_SLACK_MS:g} ms",
            p50,
            need_p50,
            None if p50 is None or need_p50 is None else p50 <= need_p50,
        ),
        _target(
            f"service PSS <= {PSS_LIMIT_BYTES / GIB:g} GiB",
            pss,
            PSS_LIMIT_BYTES / GIB,
            None if pss is None else pss <= PSS_LIMIT_BYTES / GIB,
        ),
        _target(
            f"(report) service req/s at c={c} / bare {served} ceiling",
            None if got is None else got / bare_served["ceiling_req_s"],
            None,
            None,
        ),
    ]


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def _bare_line(bare: dict[str, Any]) -> str:
    workers = f", {bare['workers']} threads" if bare["workers"] > 1 else ""
    return (
        f"- bare {bare['runtime']}: model {bare['model_img_s']:.1f} img/s at batch "
        f"{bare['best_batch']}{workers} (batch 1: {bare['batch1_ms']:.1f} ms); decode + crop "
        f"{bare['decode_ms_mean']:.1f} ms per photo (mean of {len(bare['decode_ms'])}); "
        f"ceiling {bare['ceiling_req_s']:.2f} req/s."
    )


def _cpu_table(service: dict[str, Any] | None, naive: dict[str, Any] | None) -> list[str]:
    """CPU ms per answered request at the target concurrency, per process role."""
    rows = []
    for label, measured in (("service", service), ("naive", naive)):
        level = _level(measured, TARGET_CONCURRENCY)
        if not level or "cpu_ms_per_request" not in level:
            continue
        per_role = level["cpu_ms_per_request"]
        total = sum(per_role.values())
        cells = ", ".join(f"{role} {ms:.1f}" for role, ms in per_role.items() if ms >= 0.05)
        load_ms = level["load_generator_cpu_ms_per_request"]
        rows.append(f"| {label} | {total:.1f} | {cells} | {load_ms:.1f} |")
    if not rows:
        return []
    return [
        f"CPU per answered request at c={TARGET_CONCURRENCY} (`/proc/PID/stat`, user + system):",
        "",
        "| server | total ms | by process (ms) | load generator + photo server ms |",
        "|---|---:|---|---:|",
        *rows,
        "",
    ]


def render_markdown(report: dict[str, Any]) -> str:
    bare_tf, bare_served = report["bare_tensorflow"], report["bare_served"]
    service, naive = report["service"], report["naive"]
    s = report["settings"]
    served = bare_served["runtime"]
    lines = [
        f"## {report['model']} ({bare_tf['input_size']}x{bare_tf['input_size']}), "
        f"{report.get('precision', 'float32')} - {report['date']}"
        + (" (quick run)" if s["quick"] else ""),
        "",
        "Bare pipeline, in-process:",
        "",
        _bare_line(bare_tf),
    ]
    if bare_served is not bare_tf:
        lines.append(_bare_line(bare_served))
    lines += [
        "",
        "| c | service req/s | p50 ms | p95 ms | p99 ms | errors | naive req/s | p50 ms "
        f"| p95 ms | p99 ms | errors | service/naive | service/bare tf | service/bare {served} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
        cells.append(_ratio(service_rps, nv["req_per_s"] if nv else None))
        cells.append(_ratio(service_rps, bare_tf["ceiling_req_s"]))
        cells.append(_ratio(service_rps, bare_served["ceiling_req_s"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for label, measured in (("service", service), ("naive", naive)):
        if measured:
            mem = measured["memory"]
            lines.append(
                f"Memory, {label}: PSS {mem['pss_bytes'] / 2**20:.0f} MiB over "
                f"{mem['processes']} processes (peak of the samples after each level)."
            )
    lines.append("")
    lines += _cpu_table(service, naive)
    lines += ["| target | value | threshold | verdict |", "|---|---:|---:|---|"]
    for target in report["targets"]:
        lines.append(
            f"| {target['target']} | {_fmt(target['value'], '.2f')} | "
            f"{_fmt(target['threshold'], '.2f')} | {target['verdict']} |"
        )
    lines += [
        "",
        f"Load: closed loop, {s['duration_s']:g} s per level after a {s['warmup_s']:g} s "
        f"warm-up, photos round-robin ({report['photos']} photos, 256x256 to 4000x3000), "
        f"top={s['top']}. Served with {s['serve_config']} args: {s['served_options']}.",
        format_machine(report["machine"]),
        "",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """req/s and p50 against concurrency: service, naive server and both bare ceilings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axes, latency_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, measured, style in (
        ("service", report["service"], "o-"),
        ("naive server", report["naive"], "s--"),
    ):
        if not measured:
            continue
        levels = measured["levels"]
        concurrency = [lv["concurrency"] for lv in levels]
        rate_axes.plot(concurrency, [lv["req_per_s"] for lv in levels], style, label=label)
        latency_axes.plot(concurrency, [lv["p50_ms"] for lv in levels], style, label=label)
    for key, color in (("bare_tensorflow", "tab:gray"), ("bare_served", "tab:green")):
        bare = report[key]
        rate_axes.axhline(
            bare["ceiling_req_s"],
            color=color,
            linestyle=":",
            label=f"bare {bare['runtime']} ceiling",
        )
        if key == "bare_served" and bare is report["bare_tensorflow"]:
            break
    rate_axes.set(xscale="log", xlabel="concurrency", ylabel="req/s", ylim=(0, None))
    latency_axes.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="p50 ms")
    for axes in (rate_axes, latency_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(
        f"{report['model']} {report.get('precision', 'float32')}, {report['date']}: "
        "closed-loop load on loopback"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if report["settings"]["quick"] else ""
    precision = "" if report.get("precision", "float32") == "float32" else "-" + report["precision"]
    stem = RESULTS_DIR / f"{report['date']}-{report['model']}{precision}{suffix}"
    stem.with_suffix(".md").write_text(render_markdown(report))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, stem.with_suffix(".png"))
    return stem.with_suffix(".md")


# --------------------------------------------------------------------------- driver


def precision_config(config_source: Path, precision: str, workdir: Path) -> Path:
    """The serve config with ``args.precision`` set (the config itself for its own)."""
    config = yaml.safe_load(config_source.read_text())
    app = config["applications"][0]
    if (app.get("args") or {}).get("precision", "float32") == precision:
        return config_source
    app["args"] = {**(app.get("args") or {}), "precision": precision}
    path = workdir / f"serve-{precision}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def bench_model(
    model: str,
    photo_server: PhotoServer,
    settings: Settings,
    *,
    config_source: Path,
    workdir: Path,
    with_service: bool,
    with_naive: bool,
    precisions: Sequence[str],
) -> list[dict[str, Any]]:
    """One report per precision of the served runtime; TensorFlow and naive measured once."""
    print(f"[{model}] bare pipeline, tensorflow", flush=True)
    bare_tf = measure_bare(
        model, RuntimeOptions(runtime="tensorflow"), photo_server.photos, settings
    )
    print(f"  {json.dumps({k: v for k, v in bare_tf.items() if k != 'decode_ms'})}", flush=True)
    naive = None
    if with_naive:
        print(f"[{model}] naive server", flush=True)
        with run_naive(model, workdir) as server:
            naive = measure_load(server, photo_server.urls, settings)
    reports = []
    for precision in precisions:
        config = precision_config(config_source, precision, workdir)
        served = served_runtime(config)
        if served.runtime == "tensorflow":
            bare_served = bare_tf
        else:
            print(f"[{model}] bare pipeline, {served.runtime} {precision}", flush=True)
            bare_served = measure_bare(model, served, photo_server.photos, settings)
            summary = {k: v for k, v in bare_served.items() if k != "decode_ms"}
            print(f"  {json.dumps(summary)}", flush=True)
        service = None
        if with_service:
            print(f"[{model}] service (serve run), {precision}", flush=True)
            with run_service(model, config, workdir) as server:
                service = measure_load(server, photo_server.urls, settings)
        report = {
            "model": model,
            "precision": precision,
            "date": datetime.date.today().isoformat(),
            "settings": {
                "concurrencies": list(settings.concurrencies),
                "duration_s": settings.duration_s,
                "warmup_s": settings.warmup_s,
                "batch_sizes": list(settings.batch_sizes),
                "top": settings.top,
                "quick": settings.quick,
                "serve_config": str(config_source.relative_to(ROOT))
                if config_source.is_relative_to(ROOT)
                else str(config_source),
                "served_options": dataclasses.asdict(served),
            },
            "photos": len(photo_server.photos),
            "machine": machine_info(),
            "bare_tensorflow": bare_tf,
            "bare_served": bare_served,
            "service": service,
            "naive": naive,
        }
        report["targets"] = evaluate_targets(bare_tf, bare_served, service, naive)
        reports.append(report)
    return reports


def _raise_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the clean-up of every started server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve app vs bare pipeline vs naive server.")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per level")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each level")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=list(DEFAULT_PRECISIONS),
        help="LiteRT precisions to serve side by side (args.precision)",
    )
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
            reports = bench_model(
                model,
                photo_server,
                settings,
                config_source=args.config,
                workdir=Path(workdir),
                with_service=not args.no_service,
                with_naive=not args.no_naive,
                precisions=args.precisions,
            )
            for report in reports:
                print()
                print(render_markdown(report), flush=True)
                if not args.no_write:
                    outputs.append(write_report(report))
    for path in outputs:
        print(f"wrote {path.relative_to(ROOT)} (and .json)")


if __name__ == "__main__":
    main()
