"""The idle tax: CPU the whole service burns while no request arrives (issue 34).

As a new user would see it: the service started as ``make run`` starts it
(:func:`benchmarks.launch.run_service`), ready once ``GET /`` answers, left alone for
``--settle`` seconds more, then ``--window`` seconds of silence measured from ``/proc``
(user + system CPU of every process of the service, grouped by role), and its PSS.
Then the same for Ray's floor (``floor_app.py``: the same three deployments, serving
environment and options, with no work in them), side by side: what the floor idles at
is Ray's and Serve's own, whatever the service's code does.

    .venv/bin/python -m benchmarks.idle [--settle 30] [--window 60] [--no-floor]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.launch import ROOT, RunningServer, load_config, run_floor, run_service, service_app
from benchmarks.procs import CpuSample, cpu_seconds, memory_snapshot
from imagetagger.models.options import ModelOptions
from imagetagger.models.specs import get_spec

SETTLE_S = 30.0
WINDOW_S = 60.0


def floor_input_size(config_path: Path) -> int:
    """The crop of the model ``config_path`` serves: the size of the floor's arrays."""
    args = service_app(load_config(config_path)).get("args") or {}
    return get_spec(ModelOptions.model_validate(args).model).input_size


def idle_by_role(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
    """CPU milliseconds per second of wall time, by role (a role's processes summed),
    with the number of processes of each role in the key when there is more than one."""
    spent: dict[str, float] = {}
    count: dict[str, int] = {}
    for pid, (role, total) in after.items():
        start = before[pid][1] if pid in before else 0.0  # new in the window: all of it
        spent[role] = spent.get(role, 0.0) + total - start
        count[role] = count.get(role, 0) + 1
    table = {
        (f"{role} (x{count[role]})" if count[role] > 1 else role): round(ms / seconds * 1000, 1)
        for role, ms in spent.items()
    }
    return dict(sorted(table.items(), key=lambda item: -item[1]))


def measure_idle(
    server: RunningServer, settle_s: float = SETTLE_S, window_s: float = WINDOW_S
) -> dict[str, Any]:
    """Idle CPU (ms/s, whole service and by role) and PSS of a running, unused server."""
    time.sleep(settle_s)
    before = cpu_seconds(server.token)
    started = time.monotonic()
    time.sleep(window_s)
    after = cpu_seconds(server.token)
    elapsed = time.monotonic() - started
    by_role = idle_by_role(before, after, elapsed)
    memory = memory_snapshot(server.token)
    return {
        "window_s": round(elapsed, 1),
        "total_ms_per_s": round(sum(by_role.values()), 1),
        "by_role_ms_per_s": by_role,
        "processes": len(after),
        "pss_mib": round(memory["pss_bytes"] / 2**20),
    }


def format_idle(result: dict[str, Any], floor: dict[str, Any] | None = None) -> str:
    """The per-process table; with ``floor``, Ray's floor in a second column."""
    if floor is None:
        lines = ["| process | idle ms/s |", "|---|---:|"]
        lines += [f"| {role} | {ms:.1f} |" for role, ms in result["by_role_ms_per_s"].items()]
        lines.append(f"| **whole service** | **{result['total_ms_per_s']:.1f}** |")
    else:
        lines = ["| process | service ms/s | Ray's floor ms/s |", "|---|---:|---:|"]
        ours, theirs = result["by_role_ms_per_s"], floor["by_role_ms_per_s"]
        for role in [*ours, *(role for role in theirs if role not in ours)]:
            cells = [f"{table[role]:.1f}" if role in table else "-" for table in (ours, theirs)]
            lines.append(f"| {role} | {cells[0]} | {cells[1]} |")
        lines.append(
            f"| **whole** | **{result['total_ms_per_s']:.1f}** "
            f"| **{floor['total_ms_per_s']:.1f}** |"
        )
    for name, found in (("service", result), ("Ray's floor", floor)):
        if found is not None:
            lines.append(
                f"\n{name}: {found['processes']} processes, PSS {found['pss_mib']} MiB, "
                f"window {found['window_s']} s"
            )
    return "\n".join(lines)


def idle_lines(report: dict[str, Any]) -> list[str]:
    """The report's idle-CPU lines (issue 34), where the service's run measured it."""
    idle = (report.get("service") or {}).get("idle")
    if not idle:
        return []
    floor = (report.get("floor") or {}).get("idle")
    line = (
        f"Idle (no request, {idle['window_s']} s after a {SETTLE_S:.0f} s settle): the whole "
        f"service {idle['total_ms_per_s']:.1f} ms of CPU per second, PSS {idle['pss_mib']} MiB"
    )
    if floor:
        line += (
            f"; Ray's floor {floor['total_ms_per_s']:.1f} ms/s, PSS {floor['pss_mib']} MiB "
            f"(service / floor {idle['total_ms_per_s'] / floor['total_ms_per_s']:.2f})"
        )
    return ["", line + ".", "", format_idle(idle, floor)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument("--settle", type=float, default=SETTLE_S)
    parser.add_argument("--window", type=float, default=WINDOW_S)
    parser.add_argument("--no-floor", action="store_true", help="the service only")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="idle-") as tmp:
        with run_service(args.config, Path(tmp)) as server:
            found["service"] = measure_idle(server, args.settle, args.window)
        if not args.no_floor:
            with run_floor(
                args.config, Path(tmp), input_size=floor_input_size(args.config)
            ) as server:
                found["floor"] = measure_idle(server, args.settle, args.window)
    print(format_idle(found["service"], found.get("floor")), flush=True)
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()
