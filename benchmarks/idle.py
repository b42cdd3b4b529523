"""The idle tax: CPU the whole service burns while no request arrives (issue 34).

As a new user would see it: the service started as ``make run`` starts it
(:func:`benchmarks.launch.run_service`), ready once ``GET /`` answers, left alone for
``--settle`` seconds more, then ``--window`` seconds of silence measured from ``/proc``
(user + system CPU of every process of the service, grouped by role), and its PSS.

    .venv/bin/python -m benchmarks.idle [--settle 30] [--window 60] [--config serve_config.yaml]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.launch import ROOT, RunningServer, run_service
from benchmarks.procs import CpuSample, cpu_seconds, memory_snapshot

SETTLE_S = 30.0
WINDOW_S = 60.0


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


def format_idle(result: dict[str, Any]) -> str:
    lines = ["| process | idle ms/s |", "|---|---:|"]
    lines += [f"| {role} | {ms:.1f} |" for role, ms in result["by_role_ms_per_s"].items()]
    lines.append(f"| **whole service** | **{result['total_ms_per_s']:.1f}** |")
    lines.append(
        f"\n{result['processes']} processes, PSS {result['pss_mib']} MiB, "
        f"window {result['window_s']} s"
    )
    return "\n".join(lines)


def idle_lines(report: dict[str, Any]) -> list[str]:
    """The report's idle-CPU lines (issue 34), where the service's run measured it."""
    idle = (report.get("service") or {}).get("idle")
    if not idle:
        return []
    return [
        "",
        f"Idle (no request, {idle['window_s']} s after a {SETTLE_S:.0f} s settle): the whole "
        f"service {idle['total_ms_per_s']:.1f} ms of CPU per second, PSS {idle['pss_mib']} MiB.",
        "",
        format_idle(idle),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "serve_config.yaml")
    parser.add_argument("--settle", type=float, default=SETTLE_S)
    parser.add_argument("--window", type=float, default=WINDOW_S)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="idle-") as tmp,
        run_service(args.config, Path(tmp)) as server,
    ):
        result = measure_idle(server, args.settle, args.window)
    print(format_idle(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
