"""`make bench`'s traced run (issue 32): the service again with tracing on, beside the
untraced one.

The service starts as ``make run`` starts it, with only the standard ``OTEL_*``
variables added, exporting over OTLP/HTTP to a local receiver process
(:mod:`benchmarks.otlp_receiver`), twice, on the run's first workload at c=1 and c=32
(those of ``--concurrency`` measured):

- ``sampling 1.0``: ``OTEL_TRACES_SAMPLER=always_on``, every request traced (the load
  generator sends no ``traceparent``, so each request starts its own trace);
- ``default ratio``: ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``,
  ``OTEL_TRACES_SAMPLER_ARG=0.01``: tracing on as a production deployment would run it,
  1 % of the traces that start at the service recorded (clients that send a sampled
  ``traceparent`` would still be traced). The SDK's own default,
  ``parentbased_always_on``, records every request that comes without a ``traceparent``,
  which is the sampling 1.0 run again.

The report gives req/s and p50 of each beside the untraced service's (its run earlier
in the same bench), their ratios, and the spans the receiver got per request sent
(about 10 at 1.0, ~0.1 at 0.01; fewer means the batch span processor dropped some).
The bar: traced at sampling 1.0 >= 0.9x untraced req/s at c=32.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.launch import ROOT, private_port, run_service
from benchmarks.measure import WARM_UP_REQUESTS, LoadSettings, measure_load
from benchmarks.photos import LOOPBACK, PhotoServer, wait_until_ok
from benchmarks.procs import stop_process

#: (report key, label, the OTEL_* variables beside the endpoint), in run order.
RUNS = (
    ("sampling_1", "sampling 1.0", {"OTEL_TRACES_SAMPLER": "always_on"}),
    (
        "default_ratio",
        "default ratio (parentbased_traceidratio 0.01)",
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"},
    ),
)
CONCURRENCIES = (1, 32)
TRACED_FRACTION = 0.9  # traced at sampling 1.0 req/s at c=32 >= 0.9 x untraced
#: Seconds to wait after the load for the last batch of spans (OTEL_BSP_SCHEDULE_DELAY
#: is 5 s by default) before the receiver's counts are read and the service stops.
EXPORT_WAIT_S = 6.0


@contextmanager
def otlp_receiver() -> Iterator[str]:
    """A receiver process on a private loopback port; yields its OTLP/HTTP endpoint."""
    port = private_port()
    command = [sys.executable, "-m", "benchmarks.otlp_receiver"]
    process = subprocess.Popen([*command, "--host", LOOPBACK, "--port", str(port)], cwd=ROOT)
    endpoint = f"http://{LOOPBACK}:{port}"
    try:
        wait_until_ok(endpoint + "/counts", timeout_s=30, process=process)
        yield endpoint
    finally:
        stop_process(process, signal.SIGTERM, wait_s=10)


def received(endpoint: str) -> dict[str, int]:
    with urllib.request.urlopen(endpoint + "/counts", timeout=10) as response:
        return json.loads(response.read())


def _levels(concurrencies: tuple[int, ...]) -> tuple[int, ...]:
    chosen = tuple(c for c in concurrencies if c in CONCURRENCIES)
    return chosen or concurrencies


def measure_traced(
    model: str,
    precision: str,
    photos: PhotoServer,
    settings: Any,  # bench_service.Settings
    *,
    config_source: Path,
    workdir: Path,
) -> dict[str, Any]:
    """Each of :data:`RUNS` on the first workload, one service instance each."""
    workload = settings.workloads[0]
    load: LoadSettings = dataclasses.replace(
        settings.load, concurrencies=_levels(settings.load.concurrencies)
    )
    runs: dict[str, Any] = {}
    with otlp_receiver() as endpoint:
        for key, label, variables in RUNS:
            print(f"[{model}] service, traced ({label}), {precision}", flush=True)
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **variables}
            before = received(endpoint)
            with run_service(
                config_source,
                workdir,
                model=model,
                precision=precision,
                extra_env=env,
                name=f"service-traced-{key}",
            ) as server:
                measured = measure_load(
                    server,
                    photos.workload(workload),
                    load,
                    photo_server_pid=photos.process.pid if photos.process else None,
                )
                time.sleep(EXPORT_WAIT_S)
                after = received(endpoint)
            sent = WARM_UP_REQUESTS + sum(lv["requests"] for lv in measured["levels"])
            spans = after["spans"] - before["spans"]
            measured.update(
                label=label,
                variables=variables,
                requests_sent=sent,
                spans=spans,
                traces=after["traces"] - before["traces"],
                spans_per_request=round(spans / max(sent, 1), 2),
            )
            print(f"  received {spans} spans, {measured['spans_per_request']} per request")
            runs[key] = measured
    return {"workload": workload, "runs": runs}


def for_workload(traced: dict[str, Any] | None, workload: str) -> dict[str, Any] | None:
    """The traced runs for a report of ``workload`` (None unless they measured it)."""
    return traced if traced and traced["workload"] == workload else None


# --------------------------------------------------------------------------- report


def _level(measured: dict[str, Any] | None, c: int) -> dict[str, Any] | None:
    if not measured:
        return None
    return next((lv for lv in measured["levels"] if lv["concurrency"] == c), None)


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    return a[key] / b[key] if a and b and b[key] else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def traced_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 32's bar, where the report has the traced runs."""
    traced = report.get("service_traced")
    if not traced:
        return []
    c = 32
    found = _level(traced["runs"].get("sampling_1"), c)
    ratio = _ratio(found, _level(report.get("service"), c), "req_per_s")
    verdict = "n/a" if ratio is None else ("PASS" if ratio >= TRACED_FRACTION else "FAIL")
    return [
        {
            "target": f"(issue 32) traced at sampling 1.0 / untraced req/s at c={c} "
            f">= {TRACED_FRACTION:g}",
            "value": None if ratio is None else round(ratio, 3),
            "threshold": TRACED_FRACTION,
            "verdict": verdict,
        }
    ]


def traced_lines(report: dict[str, Any]) -> list[str]:
    """The traced runs beside the untraced service: req/s, p50, ratios, spans."""
    traced = report.get("service_traced")
    if not traced:
        return []
    service = report.get("service")
    lines = [
        "Tracing (issue 32): the service again with tracing on, exporting over OTLP/HTTP "
        "to a local receiver process (`benchmarks/traced.py`):",
        "",
        "| c | run | req/s | p50 ms | req/s / untraced | p50 / untraced | spans per request |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    concurrencies = sorted(
        {lv["concurrency"] for r in traced["runs"].values() for lv in r["levels"]}
    )
    for c in concurrencies:
        base = _level(service, c)
        if base:
            rps, p50 = base["req_per_s"], base["p50_ms"]
            lines.append(f"| {c} | untraced | {rps:.2f} | {p50:.1f} | 1.00 | 1.00 | 0 |")
        for run in traced["runs"].values():
            found = _level(run, c)
            if found is None:
                continue
            cells = [
                str(c),
                run["label"],
                f"{found['req_per_s']:.2f}",
                f"{found['p50_ms']:.1f}",
                _fmt(_ratio(found, base, "req_per_s"), ".2f"),
                _fmt(_ratio(found, base, "p50_ms"), ".2f"),
                f"{run['spans_per_request']:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return [
        *lines,
        "",
        "Spans per request: all the receiver got over all requests sent (warm-up included).",
        "",
    ]
