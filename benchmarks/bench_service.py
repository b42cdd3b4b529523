"""`make bench`: the service against the peers a user would compare it with, side by side.

For each model and each precision of the served runtime, one run measures, with only
one server running at a time (:mod:`benchmarks.launch`), on each workload in turn
(``--workloads``, by default ``unique``, 100 512-px photos, and ``phone``, the same
photos at 12 MP, :mod:`benchmarks.photos`):

a. the bare pipeline in-process (:mod:`benchmarks.measure`), in TensorFlow (its best
   batch size) and in the served runtime: model images/s and batch-1 latency (once),
   the service's decode + crop per photo of each workload, and the serial ceiling they
   allow;
b. the service, started as ``make run`` starts it (``imagetagger serve``);
c. the one-process LiteRT server (``litert_server.py``: the headline peer) on the
   same runtime options as the service;
d. the naive one-process TensorFlow server (``naive_server.py``);
e. Ray's floor (``floor_app.py``): the service's three deployments with no work in
   them, in the service's deployment options and serving mode; it fetches nothing, so
   it runs on the first workload only and every report shows that measurement;
f. the service on the ``repeat`` workload (one photo, same URL and bytes) at c=32,
   right after the ``unique`` levels (:func:`repeat_base`).

Each server starts once and runs the same closed-loop load (:mod:`benchmarks.load`) at
each concurrency on each workload, one after the other; its memory (PSS of every
process, the peak per workload) and CPU per request of every process are measured
(:mod:`benchmarks.procs`). Both peers decode every photo in full, as a user's server
would; the service decodes big JPEGs at a reduced DCT scale, its design. The TensorFlow
measurements, the naive server and the floor do not depend on the precision and run
once per model. One report (:mod:`benchmarks.report`) per model, precision and
workload is printed and written to
``benchmarks/results/<date>-<model>[-int8][-<workload>][-quick].{md,json,png}`` (the
``unique`` workload unnamed: ``...-efficientnet_lite2.md`` beside
``...-efficientnet_lite2-phone.md``).

Usage::

    python -m benchmarks.bench_service                          # lite2, float32 and int8
    python -m benchmarks.bench_service --quick --precisions float32 --concurrency 1 8
    python -m benchmarks.bench_service --workloads phone --no-naive --no-floor
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import signal
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.idle import measure_idle
from benchmarks.latest import write_latest
from benchmarks.launch import (
    ROOT,
    RunningServer,
    load_config,
    run_floor,
    run_naive,
    run_peer,
    run_service,
    served_options,
)
from benchmarks.measure import (
    LoadSettings,
    measure_decode,
    measure_level,
    measure_load,
    measure_model,
    with_decode,
)
from benchmarks.model_throughput import machine_info
from benchmarks.photos import (
    PHONE_SIDE,
    WORKLOADS,
    PhotoServer,
    photos_for,
    workload_photos,
)
from benchmarks.procs import memory_snapshot
from benchmarks.report import TARGET_CONCURRENCY, evaluate_targets, render_markdown, write_report
from benchmarks.traced import for_workload, measure_traced
from imagetagger.models.runtimes import RuntimeOptions
from imagetagger.models.specs import get_spec

RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = ("efficientnet_lite2",)
DEFAULT_PRECISIONS = ("float32", "int8")
#: make bench's workloads: small web images, and phone photos (where decoding dominates).
DEFAULT_WORKLOADS = ("unique", "phone")
#: What each --no-NAME flag skips.
SERVERS = {
    "service": "the service (imagetagger serve)",
    "peer": "the one-process LiteRT server",
    "naive": "the naive TensorFlow server",
    "floor": "Ray's floor",
    "repeat": "the service's repeat-workload level",
    "traced": "the service with tracing on (benchmarks/traced.py)",
    "idle": "idle CPU of the service and Ray's floor before their load (benchmarks/idle.py)",
}


@dataclass(frozen=True)
class Settings:
    load: LoadSettings
    batch_sizes: tuple[int, ...]
    model_seconds: float
    prepare_repeats: int
    quick: bool
    workloads: tuple[str, ...]  # measured in this order, each server started once
    servers: frozenset[str]  # which of SERVERS to run


def repeat_base(workloads: Sequence[str]) -> str | None:
    """The workload the ``repeat`` level is measured after and compared with: the first
    one that is neither ``repeat`` nor ``phone`` (whose 12-MP photos are not the repeat
    photo's size), None when there is none."""
    return next((w for w in workloads if w not in ("repeat", "phone")), None)


def photos_description(workload: str) -> str:
    photos = workload_photos(workload)
    if workload == "unique":
        return f"{len(photos)} 512x512 JPEG photos, a unique URL and unique bytes per request"
    if workload == "phone":
        return (
            f"the same {len(photos)} photos as {PHONE_SIDE}x{PHONE_SIDE} JPEGs (12 MP, "
            "quality 90), a unique URL and unique bytes per request; the peers decode "
            "in full, the service at a reduced DCT scale"
        )
    if workload == "repeat":
        return "one 512x512 JPEG photo, the same URL and bytes every request"
    return f"{len(photos)} photos round-robin, 256x256 to 4000x3000, JPEG and PNG"


def _photo_server_pid(photos: PhotoServer) -> int | None:
    return photos.process.pid if photos.process else None


def _measure(
    server: RunningServer, photos: PhotoServer, workload: str, settings: Settings
) -> dict[str, Any]:
    print(f"  {server.name}: {workload} workload", flush=True)
    return measure_load(
        server,
        photos.workload(workload),
        settings.load,
        photo_server_pid=_photo_server_pid(photos),
    )


def _measure_all(
    server: RunningServer, photos: PhotoServer, settings: Settings
) -> dict[str, dict[str, Any]]:
    """One server on every workload, in turn."""
    return {w: _measure(server, photos, w, settings) for w in settings.workloads}


def _with_stop(measured: dict[str, Any], server: RunningServer) -> dict[str, Any]:
    """The server's stop time and leftovers, known once its ``with`` block has ended."""
    measured["stop_s"] = None if server.stop_s is None else round(server.stop_s, 2)
    measured["leftovers"] = list(server.leftovers)
    return measured


def _all_with_stop(
    measured: dict[str, dict[str, Any]], server: RunningServer
) -> dict[str, dict[str, Any]]:
    return {w: _with_stop(m, server) for w, m in measured.items()}


def _model_part(model: str, options: RuntimeOptions, settings: Settings) -> dict[str, Any]:
    print(f"[{model}] bare model, {options.runtime} {options.precision}", flush=True)
    part = measure_model(
        model, options, batch_sizes=settings.batch_sizes, model_seconds=settings.model_seconds
    )
    print(f"  {json.dumps(part)}", flush=True)
    return part


def _decode_times(model: str, settings: Settings) -> dict[str, dict[str, float]]:
    """The service's decode + crop per photo, per workload (independent of the runtime)."""
    times = {}
    for workload in settings.workloads:
        found = measure_decode(model, workload_photos(workload), repeats=settings.prepare_repeats)
        mean_ms = 1000 * sum(found.values()) / len(found)
        print(f"[{model}] decode + crop, {workload}: {mean_ms:.1f} ms per photo", flush=True)
        times[workload] = found
    return times


def _measure_repeat(
    server: RunningServer, photos: PhotoServer, settings: Settings
) -> dict[str, Any]:
    """The ``repeat`` workload at c=32 (or the highest concurrency measured)."""
    concurrencies = settings.load.concurrencies
    found = measure_level(
        server,
        photos.workload("repeat"),
        TARGET_CONCURRENCY if TARGET_CONCURRENCY in concurrencies else max(concurrencies),
        settings.load,
        photo_server_pid=_photo_server_pid(photos),
        label=" (repeat)",
    )
    return {"levels": [found], "memory": memory_snapshot(server.token)}


def measure_service(
    model: str,
    precision: str,
    photos: PhotoServer,
    settings: Settings,
    *,
    config_source: Path,
    workdir: Path,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The service on every workload, with (unless off) the ``repeat`` level right
    after :func:`repeat_base`'s, in one service instance."""
    print(f"[{model}] service (imagetagger serve), {precision}", flush=True)
    base = repeat_base(settings.workloads) if "repeat" in settings.servers else None
    measured: dict[str, dict[str, Any]] = {}
    repeat = None
    with run_service(config_source, workdir, model=model, precision=precision) as server:
        idle = measure_idle(server) if "idle" in settings.servers else None
        for workload in settings.workloads:
            measured[workload] = _measure(server, photos, workload, settings)
            if workload == base:
                repeat = _measure_repeat(server, photos, settings)
                if repeat["memory"]["pss_bytes"] > measured[workload]["memory"]["pss_bytes"]:
                    measured[workload]["memory"] = repeat["memory"]
    measured = _all_with_stop(measured, server)
    if idle is not None:
        for found in measured.values():
            found["idle"] = idle
    return measured, repeat


def _run_settings(
    settings: Settings, config_source: Path, served: RuntimeOptions
) -> dict[str, Any]:
    return {
        "concurrencies": list(settings.load.concurrencies),
        "duration_s": settings.load.duration_s,
        "warmup_s": settings.load.warmup_s,
        "batch_sizes": list(settings.batch_sizes),
        "top": settings.load.top,
        "quick": settings.quick,
        "serve_config": str(config_source.relative_to(ROOT))
        if config_source.is_relative_to(ROOT)
        else str(config_source),
        "served_options": dataclasses.asdict(served),
    }


def build_report(
    model: str,
    precision: str,
    workload: str,
    run_settings: dict[str, Any],
    bare: tuple[dict[str, Any], dict[str, Any]],
    servers: dict[str, dict[str, Any] | None],
) -> dict[str, Any]:
    """One report: ``bare`` is (TensorFlow, served runtime) on this workload's photos;
    ``servers`` holds ``service``, ``service_repeat``, ``peer``, ``naive`` and
    ``floor`` (None where not run)."""
    report = {
        "model": model,
        "precision": precision,
        "workload": workload,
        "date": datetime.date.today().isoformat(),
        "settings": run_settings,
        "photos": len(workload_photos(workload)),
        "photos_description": photos_description(workload),
        "machine": machine_info(),
        "bare_tensorflow": bare[0],
        "bare_served": bare[1],
        **servers,
    }
    report["targets"] = evaluate_targets(report)
    return report


def bench_model(
    model: str,
    photos: PhotoServer,
    settings: Settings,
    *,
    config_source: Path,
    workdir: Path,
    precisions: Sequence[str],
) -> list[dict[str, Any]]:
    """One report per precision and workload; TensorFlow, the naive server and the floor
    run once per model (the floor on the first workload only: it fetches nothing)."""
    config = load_config(config_source)
    decode = _decode_times(model, settings)
    tf_part = _model_part(model, RuntimeOptions(runtime="tensorflow"), settings)
    naive: dict[str, dict[str, Any]] = {}
    floor = None
    if "naive" in settings.servers:
        print(f"[{model}] naive TensorFlow server", flush=True)
        with run_naive(model, workdir) as server:
            naive = _measure_all(server, photos, settings)
        naive = _all_with_stop(naive, server)
    if "floor" in settings.servers:
        print(f"[{model}] Ray floor (imagetagger serve of floor_app)", flush=True)
        input_size = get_spec(model).input_size
        with run_floor(config_source, workdir, input_size=input_size) as server:
            floor_idle = measure_idle(server) if "idle" in settings.servers else None
            floor = _measure(server, photos, settings.workloads[0], settings)
        floor = _with_stop(floor, server)
        if floor_idle is not None:
            floor["idle"] = floor_idle

    reports = []
    for precision in precisions:
        served = served_options(config, precision)
        served_part = (
            tf_part if served.runtime == "tensorflow" else _model_part(model, served, settings)
        )
        peer: dict[str, dict[str, Any]] = {}
        service: dict[str, dict[str, Any]] = {}
        repeat = None
        if "peer" in settings.servers and served.runtime == "litert":
            print(f"[{model}] LiteRT one-process server, {precision}", flush=True)
            with run_peer(model, served, workdir) as server:
                peer = _measure_all(server, photos, settings)
            peer = _all_with_stop(peer, server)
        if "service" in settings.servers:
            service, repeat = measure_service(
                model, precision, photos, settings, config_source=config_source, workdir=workdir
            )
        traced = None
        if "traced" in settings.servers:
            traced = measure_traced(
                model, precision, photos, settings, config_source=config_source, workdir=workdir
            )
        run_settings = _run_settings(settings, config_source, served)
        for workload in settings.workloads:
            bare_tf = with_decode(tf_part, decode[workload])
            # The same object when the service serves TensorFlow: the report shows it once.
            bare_served = (
                bare_tf if served_part is tf_part else with_decode(served_part, decode[workload])
            )
            servers = {
                "service": service.get(workload),
                "service_repeat": repeat if workload == repeat_base(settings.workloads) else None,
                "peer": peer.get(workload),
                "naive": naive.get(workload),
                "floor": floor,
                "service_traced": for_workload(traced, workload),
            }
            reports.append(
                build_report(
                    model, precision, workload, run_settings, (bare_tf, bare_served), servers
                )
            )
    return reports


def _raise_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the clean-up of every started server


def parse_settings(argv: list[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description="The service against its peers, side by side.")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per level")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before each level")
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=list(DEFAULT_PRECISIONS),
        help="precisions to serve (imagetagger serve --precision), one report each",
    )
    parser.add_argument(
        "--workloads",
        "--workload",
        nargs="+",
        choices=WORKLOADS,
        default=list(DEFAULT_WORKLOADS),
        help="workloads to measure, in this order, one report each (default: unique phone)",
    )
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="short run: shorter levels")
    for name, what in SERVERS.items():
        parser.add_argument(f"--no-{name}", action="store_true", help=f"skip {what}")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    quick = args.quick
    load = LoadSettings(
        concurrencies=tuple(args.concurrency or (1, 8, 32)),
        duration_s=args.duration or (5.0 if quick else 15.0),
        warmup_s=args.warmup if args.warmup is not None else (2.0 if quick else 5.0),
        top=args.top,
    )
    settings = Settings(
        load=load,
        batch_sizes=(1, 16) if quick else (1, 8, 16, 32),
        model_seconds=1.0 if quick else 3.0,
        prepare_repeats=3 if quick else 10,
        quick=quick,
        workloads=tuple(dict.fromkeys(args.workloads)),  # in order, each once
        servers=frozenset(n for n in SERVERS if not getattr(args, f"no_{n}")),
    )
    return args, settings


def photo_workloads(settings: Settings) -> tuple[str, ...]:
    """The workloads whose photos the run's photo server must serve."""
    repeat = "repeat" in settings.servers and repeat_base(settings.workloads) is not None
    return settings.workloads + (("repeat",) if repeat else ())


def main(argv: list[str] | None = None) -> None:
    args, settings = parse_settings(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    from imagetagger.tfconfig import configure_tensorflow

    configure_tensorflow()
    outputs = []
    with (
        tempfile.TemporaryDirectory(prefix="imagetagger-bench-") as workdir,
        PhotoServer(photos_for(photo_workloads(settings))) as photos,
    ):
        for model in args.models:
            reports = bench_model(
                model,
                photos,
                settings,
                config_source=args.config,
                workdir=Path(workdir),
                precisions=args.precisions,
            )
            for report in reports:
                print()
                print(render_markdown(report), flush=True)
                if not args.no_write:
                    outputs.append(write_report(report, RESULTS_DIR))
    for path in outputs:
        print(f"wrote {path.relative_to(ROOT)} (and .json, .png)")
    if outputs:  # the newest full run's headline ratios, which README and docs link to
        print(f"wrote {write_latest(RESULTS_DIR).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
