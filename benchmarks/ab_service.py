"""Side-by-side runs of the service in several variants: which change pays, and by how much.

Each variant is a Serve config and extra environment variables; every variant runs the
same load (closed loop at each concurrency, after a discarded warm-up) one after the
other, ``--rounds`` times in alternating order so drift on a shared machine hits every
variant alike. Printed per variant: req/s and p50 at each concurrency, CPU ms per
answered request by process, and peak PSS. Only ratios within one run mean anything.

Usage::

    python -m benchmarks.ab_service \\
        --variant base=serve_config.yaml \\
        --variant no-access-log=/tmp/no_access_log.yaml \\
        --variant arena2=serve_config.yaml:MALLOC_ARENA_MAX=2 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_service import (
    cpu_ms_per_request,
    cpu_seconds,
    memory_snapshot,
    run_service,
    warm_up,
)
from benchmarks.photos import PhotoServer, build_photo_set
from benchmarks.serve_smoke import run_load


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
    variant: Variant, model: str, urls: list[str], concurrencies: list[int], seconds: float
) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as workdir,
        run_service(model, variant.config, Path(workdir), extra_env=variant.env) as server,
    ):
        warm_up(server, urls, top=5)
        result: dict[str, Any] = {"levels": {}}
        for concurrency in concurrencies:
            asyncio.run(run_load(server.base_url, urls, concurrency=concurrency, duration_s=3))
            before = cpu_seconds(server.token)
            load = asyncio.run(
                run_load(server.base_url, urls, concurrency=concurrency, duration_s=seconds, top=5)
            )
            cpu = cpu_ms_per_request(before, cpu_seconds(server.token), load.ok)
            result["levels"][concurrency] = {
                "req_per_s": load.requests_per_s,
                "p50_ms": load.latency_ms(50),
                "errors": load.errors,
                "cpu": cpu,
            }
        result["pss_mib"] = memory_snapshot(server.token)["pss_bytes"] / 2**20
        return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", type=parse_variant, action="append", required=True)
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)

    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with PhotoServer(build_photo_set()) as photos:
        for round_index in range(args.rounds):
            order = args.variant if round_index % 2 == 0 else args.variant[::-1]
            for variant in order:
                run = measure(variant, args.model, photos.urls, args.concurrency, args.seconds)
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
