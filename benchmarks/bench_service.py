"""`make bench`: the service against the peers a user would compare it with, side by side.

For each model and each precision of the served runtime, one run measures, with only
one server running at a time (:mod:`benchmarks.launch`):

a. the bare pipeline in-process (:func:`benchmarks.measure.measure_bare`), in
   TensorFlow (its best batch size) and in the served runtime: model images/s, batch-1
   latency, decode + crop per photo, and the serial ceiling they allow;
b. the service, started as ``make run`` starts it (``imagetagger serve``);
c. the one-process LiteRT server (``litert_server.py``: the headline peer) on the
   same runtime options as the service;
d. the naive one-process TensorFlow server (``naive_server.py``);
e. Ray's floor (``floor_app.py``): the service's three deployments with no work in
   them, in the service's deployment options and serving mode;
f. the service on the ``repeat`` workload (one photo, same URL and bytes) at c=32.

Each server runs the same closed-loop load (:mod:`benchmarks.load`) at each concurrency
on the chosen workload (``unique`` by default: a new URL and new bytes per request,
:mod:`benchmarks.photos`); its memory (PSS of every process) and CPU per request of
every process are measured (:mod:`benchmarks.procs`). The TensorFlow measurements, the
naive server and the floor do not depend on the precision and run once per model. The
report (:mod:`benchmarks.report`) is printed and written to
``benchmarks/results/<date>-<model>[-int8][-<workload>][-quick].{md,json,png}``.

Usage::

    python -m benchmarks.bench_service                          # lite2, float32 and int8
    python -m benchmarks.bench_service --quick --precisions float32 --concurrency 1 8
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
from benchmarks.measure import LoadSettings, measure_bare, measure_level, measure_load
from benchmarks.model_throughput import machine_info
from benchmarks.photos import (
    DEFAULT_WORKLOAD,
    WORKLOADS,
    Photo,
    PhotoServer,
    build_photo_set,
    build_unique_set,
)
from benchmarks.procs import memory_snapshot
from benchmarks.report import TARGET_CONCURRENCY, evaluate_targets, render_markdown, write_report
from imagetagger.models.runtimes import RuntimeOptions
from imagetagger.models.specs import get_spec

RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_MODELS = ("efficientnet_lite2",)
DEFAULT_PRECISIONS = ("float32", "int8")
#: What each --no-NAME flag skips.
SERVERS = {
    "service": "the service (imagetagger serve)",
    "peer": "the one-process LiteRT server",
    "naive": "the naive TensorFlow server",
    "floor": "Ray's floor",
    "repeat": "the service's repeat-workload level",
}


@dataclass(frozen=True)
class Settings:
    load: LoadSettings
    batch_sizes: tuple[int, ...]
    model_seconds: float
    prepare_repeats: int
    quick: bool
    workload: str
    servers: frozenset[str]  # which of SERVERS to run


def workload_photos(workload: str) -> tuple[Photo, ...]:
    """The photos a workload's requests carry (for the bare pipeline's decode time)."""
    if workload == "mixed":
        return build_photo_set()
    unique = build_unique_set()
    return unique[:1] if workload == "repeat" else unique


def photos_description(workload: str) -> str:
    photos = workload_photos(workload)
    if workload == "unique":
        return f"{len(photos)} 512x512 JPEG photos, a unique URL and unique bytes per request"
    if workload == "repeat":
        return "one 512x512 JPEG photo, the same URL and bytes every request"
    return f"{len(photos)} photos round-robin, 256x256 to 4000x3000, JPEG and PNG"


def _measure(server: RunningServer, photos: PhotoServer, settings: Settings) -> dict[str, Any]:
    measured = measure_load(
        server,
        photos.workload(settings.workload),
        settings.load,
        photo_server_pid=photos.process.pid if photos.process else None,
    )
    return measured


def _with_stop(measured: dict[str, Any], server: RunningServer) -> dict[str, Any]:
    """The server's stop time and leftovers, known once its ``with`` block has ended."""
    measured["stop_s"] = None if server.stop_s is None else round(server.stop_s, 2)
    measured["leftovers"] = list(server.leftovers)
    return measured


def _bare(model: str, options: RuntimeOptions, settings: Settings) -> dict[str, Any]:
    print(f"[{model}] bare pipeline, {options.runtime} {options.precision}", flush=True)
    bare = measure_bare(
        model,
        options,
        workload_photos(settings.workload),
        batch_sizes=settings.batch_sizes,
        model_seconds=settings.model_seconds,
        prepare_repeats=settings.prepare_repeats,
    )
    print(f"  {json.dumps({k: v for k, v in bare.items() if k != 'decode_ms'})}", flush=True)
    return bare


def measure_service(
    model: str,
    precision: str,
    photos: PhotoServer,
    settings: Settings,
    *,
    config_source: Path,
    workdir: Path,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The service on the workload, then (unless off) on ``repeat`` at c=32 (or the
    highest concurrency measured, when 32 is not)."""
    print(f"[{model}] service (imagetagger serve), {precision}", flush=True)
    repeat = None
    with run_service(config_source, workdir, model=model, precision=precision) as server:
        service = _measure(server, photos, settings)
        if "repeat" in settings.servers and settings.workload != "repeat":
            concurrencies = settings.load.concurrencies
            found = measure_level(
                server,
                photos.workload("repeat"),
                TARGET_CONCURRENCY if TARGET_CONCURRENCY in concurrencies else max(concurrencies),
                settings.load,
                photo_server_pid=photos.process.pid if photos.process else None,
                label=" (repeat)",
            )
            memory = memory_snapshot(server.token)
            repeat = {"levels": [found], "memory": memory}
            if memory["pss_bytes"] > service["memory"]["pss_bytes"]:
                service["memory"] = memory
    return _with_stop(service, server), repeat


def bench_model(
    model: str,
    photos: PhotoServer,
    settings: Settings,
    *,
    config_source: Path,
    workdir: Path,
    precisions: Sequence[str],
) -> list[dict[str, Any]]:
    """One report per precision; TensorFlow, the naive server and the floor run once."""
    config = load_config(config_source)
    bare_tf = _bare(model, RuntimeOptions(runtime="tensorflow"), settings)
    naive = floor = None
    if "naive" in settings.servers:
        print(f"[{model}] naive TensorFlow server", flush=True)
        with run_naive(model, workdir) as server:
            naive = _measure(server, photos, settings)
        naive = _with_stop(naive, server)
    if "floor" in settings.servers:
        print(f"[{model}] Ray floor (imagetagger serve of floor_app)", flush=True)
        input_size = get_spec(model).input_size
        with run_floor(config_source, workdir, input_size=input_size) as server:
            floor = _measure(server, photos, settings)
        floor = _with_stop(floor, server)

    reports = []
    for precision in precisions:
        served = served_options(config, precision)
        bare_served = bare_tf if served.runtime == "tensorflow" else _bare(model, served, settings)
        peer = service = repeat = None
        if "peer" in settings.servers and served.runtime == "litert":
            print(f"[{model}] LiteRT one-process server, {precision}", flush=True)
            with run_peer(model, served, workdir) as server:
                peer = _measure(server, photos, settings)
            peer = _with_stop(peer, server)
        if "service" in settings.servers:
            service, repeat = measure_service(
                model, precision, photos, settings, config_source=config_source, workdir=workdir
            )
        report = {
            "model": model,
            "precision": precision,
            "workload": settings.workload,
            "date": datetime.date.today().isoformat(),
            "settings": {
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
            },
            "photos": len(workload_photos(settings.workload)),
            "photos_description": photos_description(settings.workload),
            "machine": machine_info(),
            "bare_tensorflow": bare_tf,
            "bare_served": bare_served,
            "service": service,
            "service_repeat": repeat,
            "peer": peer,
            "naive": naive,
            "floor": floor,
        }
        report["targets"] = evaluate_targets(report)
        reports.append(report)
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
    parser.add_argument("--workload", choices=WORKLOADS, default=DEFAULT_WORKLOAD)
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
        workload=args.workload,
        servers=frozenset(n for n in SERVERS if not getattr(args, f"no_{n}")),
    )
    return args, settings


def main(argv: list[str] | None = None) -> None:
    args, settings = parse_settings(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    from imagetagger.tfconfig import configure_tensorflow

    configure_tensorflow()
    outputs = []
    with (
        tempfile.TemporaryDirectory(prefix="imagetagger-bench-") as workdir,
        PhotoServer() as photos,
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


if __name__ == "__main__":
    main()
