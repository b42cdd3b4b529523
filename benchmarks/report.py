"""``make bench``'s report: the targets of issue 22 (and 18), markdown, plot, files.

A report is one JSON-able dict per (model, precision, workload): the bare pipelines,
and for each server (``service``, ``peer``, ``naive``, ``floor``) its load levels and
peak memory; ``service_repeat`` is the service on the ``repeat`` workload at the target
concurrency. The ``phone`` workload (12-MP photos) has targets of its own: there the
service's reduced-scale decode should win outright. Nothing here measures; everything
here can be tested without a server.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.idle import idle_lines
from benchmarks.model_throughput import format_machine
from benchmarks.traced import traced_lines, traced_targets

GIB = 2**30
MIB = 2**20
TARGET_CONCURRENCY = 32

# Targets (issue 22: the serving layer's own cost, 512-px and phone photos; issue 18:
# the response cache). Latency is judged as a ratio: the gap is CPU per hop, so it
# scales with the machine.
#: service req/s at c=32 >= this x the one-process LiteRT server's, by precision
PEER_FRACTION = {"float32": 0.95, "int8": 0.9}
PEER_GOAL = 1.0  # ... and the goal is 1.0 x
LATENCY_RATIO = 1.2  # service p50 at c=1 <= 1.2 x the one-process server's
LATENCY_GOAL = 1.1  # ... and the goal is 1.1 x
PHONE_PEER_FACTOR = 2.5  # phone photos: service req/s at c=32 >= 2.5 x the one-process
PHONE_LATENCY_RATIO = 1.0  # phone photos: service p50 at c=1 below the one-process's
PSS_LIMIT_BYTES = int(1.5 * GIB)  # every process `make run` starts
FLOOR_SLACK_BYTES = 200 * MIB  # service PSS - floor PSS
REPEAT_FACTOR = 2.0  # repeat / unique req/s at c=32
PHONE_WORKLOAD = "phone"

#: (report key, label) of the servers, in table order.
SERVERS = (
    ("service", "service"),
    ("peer", "LiteRT one-process"),
    ("naive", "naive TensorFlow"),
    ("floor", "Ray floor"),
)


def level(measured: dict[str, Any] | None, concurrency: int) -> dict[str, Any] | None:
    """The level of ``measured`` at ``concurrency``, if it was measured."""
    if not measured:
        return None
    return next((lv for lv in measured["levels"] if lv["concurrency"] == concurrency), None)


def _value(measured: dict[str, Any] | None, concurrency: int, key: str) -> float | None:
    found = level(measured, concurrency)
    return None if found is None else found[key]


def _pss(measured: dict[str, Any] | None) -> float | None:
    return None if not measured else float(measured["memory"]["pss_bytes"])


def _target(
    label: str, value: float | None, threshold: float | None, ok: bool | None
) -> dict[str, Any]:
    return {
        "target": label,
        "value": None if value is None else round(value, 3),
        "threshold": None if threshold is None else round(threshold, 3),
        "verdict": "n/a" if ok is None else ("PASS" if ok else "FAIL"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _at_least(value: float | None, threshold: float | None) -> bool | None:
    return None if value is None or threshold is None else value >= threshold


def _at_most(value: float | None, threshold: float | None) -> bool | None:
    return None if value is None or threshold is None else value <= threshold


def _below(value: float | None, threshold: float | None) -> bool | None:
    return None if value is None or threshold is None else value < threshold


def repeat_vs_unique(report: dict[str, Any]) -> tuple[int, float | None]:
    """The concurrency of the service's ``repeat`` level, and its req/s over the main
    workload's at that concurrency (None when either is missing)."""
    repeat = report.get("service_repeat")
    if not repeat or not repeat["levels"]:
        return TARGET_CONCURRENCY, None
    found = repeat["levels"][0]
    c = found["concurrency"]
    return c, _ratio(found["req_per_s"], _value(report.get("service"), c, "req_per_s"))


def peer_fraction(precision: str) -> float:
    """The c=32 bar against the one-process server (int8's is lower: its model is
    cheaper, so the serving layer's fixed cost weighs more)."""
    return PEER_FRACTION.get(precision, PEER_FRACTION["float32"])


def _peer_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Throughput and c=1 latency against the one-process LiteRT server, as ratios."""
    c = TARGET_CONCURRENCY
    service, peer = report.get("service"), report.get("peer")
    rps_ratio = _ratio(_value(service, c, "req_per_s"), _value(peer, c, "req_per_s"))
    p50_ratio = _ratio(_value(service, 1, "p50_ms"), _value(peer, 1, "p50_ms"))
    rps_label = f"service req/s at c={c} / LiteRT one-process"
    p50_label = "service p50 at c=1 / LiteRT one-process p50"
    if report.get("workload") == PHONE_WORKLOAD:
        return [
            _target(
                f"(phone) {rps_label} >= {PHONE_PEER_FACTOR:g}",
                rps_ratio,
                PHONE_PEER_FACTOR,
                _at_least(rps_ratio, PHONE_PEER_FACTOR),
            ),
            _target(
                f"(phone) {p50_label} < {PHONE_LATENCY_RATIO:g}",
                p50_ratio,
                PHONE_LATENCY_RATIO,
                _below(p50_ratio, PHONE_LATENCY_RATIO),
            ),
        ]
    fraction = peer_fraction(report.get("precision", "float32"))
    return [
        _target(
            f"{rps_label} >= {fraction:g}", rps_ratio, fraction, _at_least(rps_ratio, fraction)
        ),
        _target(
            f"(goal) {rps_label} >= {PEER_GOAL:g}",
            rps_ratio,
            PEER_GOAL,
            _at_least(rps_ratio, PEER_GOAL),
        ),
        _target(
            f"{p50_label} <= {LATENCY_RATIO:g}",
            p50_ratio,
            LATENCY_RATIO,
            _at_most(p50_ratio, LATENCY_RATIO),
        ),
        _target(
            f"(goal) {p50_label} <= {LATENCY_GOAL:g}",
            p50_ratio,
            LATENCY_GOAL,
            _at_most(p50_ratio, LATENCY_GOAL),
        ),
    ]


def _memory_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    service_pss, floor_pss = _pss(report.get("service")), _pss(report.get("floor"))
    pss_gib = None if service_pss is None else service_pss / GIB
    above_floor = (
        None if service_pss is None or floor_pss is None else (service_pss - floor_pss) / MIB
    )
    return [
        _target(
            f"whole service PSS GiB <= {PSS_LIMIT_BYTES / GIB:g}",
            pss_gib,
            PSS_LIMIT_BYTES / GIB,
            _at_most(pss_gib, PSS_LIMIT_BYTES / GIB),
        ),
        _target(
            f"service PSS - Ray floor PSS, MiB <= {FLOOR_SLACK_BYTES / MIB:g}",
            above_floor,
            FLOOR_SLACK_BYTES / MIB,
            _at_most(above_floor, FLOOR_SLACK_BYTES / MIB),
        ),
    ]


def _repeat_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The response cache's target, where the report has the repeat level (the phone
    report does not: its photos are not the repeat photo's size)."""
    if report.get("workload") == PHONE_WORKLOAD:
        return []
    repeat_c, repeat_ratio = repeat_vs_unique(report)
    return [
        _target(
            f"(issue 18) service req/s at c={repeat_c}, repeat / unique >= {REPEAT_FACTOR:g}",
            repeat_ratio,
            REPEAT_FACTOR,
            _at_least(repeat_ratio, REPEAT_FACTOR),
        )
    ]


def _reported_ratios(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Ratios reported with no threshold: against naive TensorFlow and the bare ceiling."""
    c = TARGET_CONCURRENCY
    service_rps = _value(report.get("service"), c, "req_per_s")
    naive_ratio = _ratio(service_rps, _value(report.get("naive"), c, "req_per_s"))
    bare = report.get("bare_served")
    ceiling_ratio = _ratio(service_rps, bare["ceiling_req_s"] if bare else None)
    return [
        _target(f"(report) service / naive TensorFlow req/s at c={c}", naive_ratio, None, None),
        _target(
            f"(report) service req/s at c={c} / bare {bare['runtime'] if bare else '-'} ceiling",
            ceiling_ratio,
            None,
            None,
        ),
    ]


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the report's workload with its verdict and the numbers behind it
    ("n/a": not measured)."""
    return [
        *_peer_targets(report),
        *_memory_targets(report),
        *_repeat_targets(report),
        *traced_targets(report),
        *_reported_ratios(report),
    ]


# --------------------------------------------------------------------------- markdown


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _bare_line(bare: dict[str, Any]) -> str:
    workers = f", {bare['workers']} threads" if bare["workers"] > 1 else ""
    return (
        f"- bare {bare['runtime']}: model {bare['model_img_s']:.1f} img/s at batch "
        f"{bare['best_batch']}{workers} (batch 1: {bare['batch1_ms']:.1f} ms); decode + crop "
        f"{bare['decode_ms_mean']:.1f} ms per photo (mean of {len(bare['decode_ms'])}); "
        f"ceiling {bare['ceiling_req_s']:.2f} req/s."
    )


def _headline(report: dict[str, Any], concurrencies: Sequence[int]) -> list[str]:
    service, peer = report.get("service"), report.get("peer")
    lines = [
        "| c | service req/s | LiteRT one-process req/s | service / one-process "
        "| service p50 ms | one-process p50 ms | p50 difference ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in concurrencies:
        s_rps, p_rps = _value(service, c, "req_per_s"), _value(peer, c, "req_per_s")
        s_p50, p_p50 = _value(service, c, "p50_ms"), _value(peer, c, "p50_ms")
        diff = None if s_p50 is None or p_p50 is None else s_p50 - p_p50
        cells = [
            str(c),
            _fmt(s_rps, ".2f"),
            _fmt(p_rps, ".2f"),
            _fmt(_ratio(s_rps, p_rps), ".2f"),
            _fmt(s_p50, ".1f"),
            _fmt(p_p50, ".1f"),
            _fmt(diff, "+.1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _all_servers(report: dict[str, Any], concurrencies: Sequence[int]) -> list[str]:
    service = report.get("service")
    lines = [
        "| c | server | req/s | p50 ms | p95 ms | p99 ms | errors | service / this |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in concurrencies:
        for key, label in SERVERS:
            found = level(report.get(key), c)
            if found is None:
                continue
            cells = [
                str(c),
                label,
                _fmt(found["req_per_s"], ".2f"),
                _fmt(found["p50_ms"], ".1f"),
                _fmt(found["p95_ms"], ".1f"),
                _fmt(found["p99_ms"], ".1f"),
                str(found["errors"]),
                _fmt(_ratio(_value(service, c, "req_per_s"), found["req_per_s"]), ".2f"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _repeat_line(report: dict[str, Any]) -> list[str]:
    repeat = report.get("service_repeat")
    if not repeat or not repeat["levels"]:
        return []
    found = repeat["levels"][0]
    c, ratio = repeat_vs_unique(report)
    workload = report.get("workload", "unique")
    main_rps = _fmt(_value(report.get("service"), c, "req_per_s"), ".2f")
    return [
        f"Service, `repeat` workload (one photo, the same URL and bytes every request) at "
        f"c={c}: {found['req_per_s']:.2f} req/s, p50 {found['p50_ms']:.1f} ms, "
        f"{found['errors']} errors; {workload}: {main_rps} req/s; repeat / {workload} "
        f"{_fmt(ratio, '.2f')}.",
        "",
    ]


def cpu_table(report: dict[str, Any], concurrency: int | None = None) -> list[str]:
    """CPU ms per answered request at ``concurrency`` (default: c=32, else the highest
    measured): every process role of every server, side by side."""
    if concurrency is None:
        measured = report["settings"]["concurrencies"]
        concurrency = TARGET_CONCURRENCY if TARGET_CONCURRENCY in measured else max(measured)
    columns = [
        (label, found)
        for key, label in (
            ("service", "service"),
            ("floor", "Ray floor"),
            ("peer", "LiteRT one-process"),
            ("naive", "naive TensorFlow"),
        )
        if (found := level(report.get(key), concurrency)) and "cpu_ms_per_request" in found
    ]
    if not columns:
        return []
    roles: dict[str, float] = {}
    for _, found in columns:
        for role, ms in found["cpu_ms_per_request"].items():
            roles[role] = max(roles.get(role, 0.0), ms)
    ordered = [role for role in sorted(roles, key=lambda r: -roles[r]) if roles[role] >= 0.05]
    header = " | ".join(label for label, _ in columns)
    lines = [
        f"CPU per answered request at c={concurrency}, ms (`/proc/PID/stat`, user + system):",
        "",
        f"| process | {header} |",
        "|---|" + "---:|" * len(columns),
    ]
    for role in ordered:
        cells = [_fmt(found["cpu_ms_per_request"].get(role), ".2f") for _, found in columns]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    totals = [sum(found["cpu_ms_per_request"].values()) for _, found in columns]
    lines.append("| **server total** | " + " | ".join(f"**{t:.2f}**" for t in totals) + " |")
    for key, label in (
        ("load_generator_cpu_ms_per_request", "load generator (bench process)"),
        ("photo_server_cpu_ms_per_request", "photo server"),
    ):
        cells = [_fmt(found.get(key), ".2f") for _, found in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _memory_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for key, label in SERVERS:
        measured = report.get(key)
        if measured:
            mem = measured["memory"]
            lines.append(
                f"- {label}: PSS {mem['pss_bytes'] / MIB:,.0f} MiB over {mem['processes']} "
                f"process{'es' if mem['processes'] != 1 else ''} (peak of the samples after "
                "each level)"
            )
    return ["Memory:", "", *lines, ""] if lines else []


def _stop_lines(report: dict[str, Any]) -> list[str]:
    stops = [
        f"{label} {measured['stop_s']:.1f} s"
        for key, label in SERVERS
        if (measured := report.get(key)) and measured.get("stop_s") is not None
    ]
    return [f"Stopped (SIGINT for Serve, SIGTERM otherwise, to exit): {', '.join(stops)}.", ""]


def render_markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    concurrencies = s["concurrencies"]
    title = (
        f"## {report['model']} ({report['bare_served']['input_size']}x"
        f"{report['bare_served']['input_size']}), {report['precision']}, "
        f"`{report['workload']}` workload - {report['date']}"
        + (" (quick run)" if s["quick"] else "")
    )
    lines = [title, "", "Bare pipeline, in-process:", ""]
    if report.get("bare_tensorflow"):
        lines.append(_bare_line(report["bare_tensorflow"]))
    if report["bare_served"] is not report.get("bare_tensorflow"):
        lines.append(_bare_line(report["bare_served"]))
    lines += ["", *_headline(report, concurrencies), "", *_all_servers(report, concurrencies)]
    lines += ["", *_repeat_line(report), *traced_lines(report), *idle_lines(report)]
    lines += [*_memory_lines(report), *cpu_table(report)]
    lines += ["| target | value | threshold | verdict |", "|---|---:|---:|---|"]
    for target in report.get("targets") or evaluate_targets(report):
        lines.append(
            f"| {target['target']} | {_fmt(target['value'], '.2f')} | "
            f"{_fmt(target['threshold'], '.2f')} | {target['verdict']} |"
        )
    lines += [
        "",
        *_stop_lines(report),
        f"Load: closed loop, {s['duration_s']:g} s per level after a {s['warmup_s']:g} s "
        f"warm-up; `{report['workload']}` workload ({report['photos_description']}); "
        f"top={s['top']}. Served with {s['serve_config']} args: {s['served_options']}.",
        format_machine(report["machine"]),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- files


def plot(report: dict[str, Any], path: Path) -> None:
    """req/s and p50 against concurrency: service, peers, the bare ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axes, latency_axes) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"service": "o-", "peer": "^-", "naive": "s--"}  # the floor is off the scale
    for key, label in SERVERS:
        measured = report.get(key)
        if not measured or key not in styles:
            continue
        levels = measured["levels"]
        concurrency = [lv["concurrency"] for lv in levels]
        rate_axes.plot(concurrency, [lv["req_per_s"] for lv in levels], styles[key], label=label)
        latency_axes.plot(concurrency, [lv["p50_ms"] for lv in levels], styles[key], label=label)
    repeat = report.get("service_repeat")
    if repeat and repeat["levels"]:
        found = repeat["levels"][0]
        rate_axes.plot([found["concurrency"]], [found["req_per_s"]], "*", label="service, repeat")
    bare = report["bare_served"]
    rate_axes.axhline(
        bare["ceiling_req_s"], color="tab:green", linestyle=":", label=f"bare {bare['runtime']}"
    )
    rate_axes.set(xscale="log", xlabel="concurrency", ylabel="req/s", ylim=(0, None))
    latency_axes.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="p50 ms")
    for axes in (rate_axes, latency_axes):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(
        f"{report['model']} {report['precision']}, {report['workload']} workload, "
        f"{report['date']}: closed-loop load on loopback"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report_stem(report: dict[str, Any], results_dir: Path) -> Path:
    """``<date>-<model>[-int8][-<workload>][-quick]`` (the unique workload unnamed)."""
    parts = [report["date"], report["model"]]
    if report["precision"] != "float32":
        parts.append(report["precision"])
    if report["workload"] != "unique":
        parts.append(report["workload"])
    if report["settings"]["quick"]:
        parts.append("quick")
    return results_dir / "-".join(parts)


def write_report(report: dict[str, Any], results_dir: Path) -> Path:
    """The report as ``.md``, ``.json`` and ``.png``; returns the markdown's path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(report, results_dir)
    stem.with_suffix(".md").write_text(render_markdown(report))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, stem.with_suffix(".png"))
    return stem.with_suffix(".md")
