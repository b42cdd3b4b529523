"""Side-by-side runs of the service in several variants: which change pays, and by how much.

Each variant is a Serve config and extra environment variables; every variant runs the
same load (closed loop at each concurrency, after a discarded warm-up; the ``unique``
workload unless ``--workload`` says otherwise), started as ``make run`` starts the
service (:mod:`benchmarks.launch`), one after the other, ``--rounds`` times in
alternating order so drift on a shared machine hits every variant alike. Printed per
variant: req/s and p50 at each concurrency, CPU ms per answered request by process, and
peak PSS. Only ratios within one run mean anything.

Usage::

    python -m benchmarks.ab_service \\
        --variant base=serve_config.yaml \\
        --variant no-access-log=/tmp/no_access_log.yaml \\
        --variant arena2=serve_config.yaml:MALLOC_ARENA_MAX=2 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.launch import run_service
from benchmarks.load import ImageURLs
from benchmarks.measure import WARM_UP_REQUESTS, LoadSettings, measure_level, warm_up
from benchmarks.photos import DEFAULT_WORKLOAD, WORKLOADS, PhotoServer, photos_for
from benchmarks.procs import memory_snapshot


@dataclass(frozen=True)
class Variant:
    name: str
    config: Path
    env: dict[str, str]


def parse_variant(text: str) -> Variant:
    """``NAME=CONFIG[:KEY=VALUE[:KEY=VALUE...]]``."""
    name, _, rest = text.partition("=")
    config, *pairs = rest.split(":")
    if not name or not config:
        raise argparse.ArgumentTypeError(f"expected NAME=CONFIG[:KEY=VALUE...], got {text!r}")
    return Variant(name, Path(config), dict(pair.split("=", 1) for pair in pairs))


def measure(
    variant: Variant, model: str, images: ImageURLs, settings: LoadSettings
) -> dict[str, Any]:
    """One variant started as ``make run`` starts the service, every level measured."""
    with (
        tempfile.TemporaryDirectory() as workdir,
        run_service(variant.config, Path(workdir), model=model, extra_env=variant.env) as server,
    ):
        warm_up(server, images, settings.top, WARM_UP_REQUESTS)
        result: dict[str, Any] = {"levels": {}}
        for concurrency in settings.concurrencies:
            found = measure_level(server, images, concurrency, settings, label=f" {variant.name}")
            result["levels"][concurrency] = {
                "req_per_s": found["req_per_s"],
                "p50_ms": found["p50_ms"],
                "errors": found["errors"],
                "cpu": found["cpu_ms_per_request"],
            }
        result["pss_mib"] = memory_snapshot(server.token)["pss_bytes"] / 2**20
    result["stop_s"] = server.stop_s
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", type=parse_variant, action="append", required=True)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workload", choices=WORKLOADS, default=DEFAULT_WORKLOAD)
    args = parser.parse_args(argv)
    settings = LoadSettings(
        concurrencies=tuple(args.concurrency), duration_s=args.seconds, warmup_s=3.0, top=5
    )

    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with PhotoServer(photos_for([args.workload])) as photos:
        images = photos.workload(args.workload)
        for round_index in range(args.rounds):
            order = args.variant if round_index % 2 == 0 else args.variant[::-1]
            for variant in order:
                run = measure(variant, args.model, images, settings)
                runs[variant.name].append(run)
                summary = {c: round(lv["req_per_s"], 1) for c, lv in run["levels"].items()}
                print(f"round {round_index + 1} {variant.name}: req/s {summary}", flush=True)
    print()
    top = max(args.concurrency)
    header = " | ".join(f"c={c} req/s | c={c} p50 ms" for c in args.concurrency)
    print(f"| variant | {header} | CPU ms/req at c={top} | PSS MiB |")
    print("|---|" + "---:|" * (2 * len(args.concurrency) + 2))
    for variant in args.variant:
        measured = runs[variant.name]
        cells = []
        for c in args.concurrency:
            cells.append(f"{statistics.median(r['levels'][c]['req_per_s'] for r in measured):.1f}")
            cells.append(f"{statistics.median(r['levels'][c]['p50_ms'] for r in measured):.1f}")
        cpu = measured[-1]["levels"][top]["cpu"]
        cpu_text = (
            f"{sum(cpu.values()):.1f} ("
            + ", ".join(f"{role} {ms:.1f}" for role, ms in list(cpu.items())[:4])
            + ")"
        )
        pss = max(r["pss_mib"] for r in measured)
        print(f"| {variant.name} | {' | '.join(cells)} | {cpu_text} | {pss:.0f} |")


if __name__ == "__main__":
    main()
