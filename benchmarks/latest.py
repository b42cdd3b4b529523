"""``benchmarks/results/LATEST.md``: the newest full run's headline ratios, with links.

``make bench`` rewrites it after writing its reports, so the README and docs/PERFORMANCE.md
link here instead of copying figures by hand. It is made from the reports' ``.json`` files
in the results folder: those of the newest date, quick runs (``--quick``) left out. Run
``python -m benchmarks.latest`` to make it again from the files there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.model_throughput import format_machine
from benchmarks.report import TARGET_CONCURRENCY, evaluate_targets, report_stem

LATEST_NAME = "LATEST.md"
#: The summary's columns: the first target of each report whose label holds this text
#: (so the row shows the report's own figures, rounded as its table rounds them).
HEADLINES = (
    f"service req/s at c={TARGET_CONCURRENCY} / LiteRT one-process",
    "service p50 at c=1 / LiteRT one-process p50",
    "whole service PSS GiB",
)


def _full_reports(results_dir: Path) -> list[dict[str, Any]]:
    reports = []
    for path in sorted(results_dir.glob("*.json")):
        report = json.loads(path.read_text())
        is_report = isinstance(report, dict) and {"date", "model", "settings"} <= report.keys()
        if is_report and not report["settings"].get("quick"):
            reports.append(report)
    return reports


def newest_reports(results_dir: Path) -> list[dict[str, Any]]:
    """The full runs' reports of the newest date: float32 before int8, 512 px before phone."""
    reports = _full_reports(results_dir)
    if not reports:
        return []
    newest = max(report["date"] for report in reports)
    return sorted(
        (report for report in reports if report["date"] == newest),
        key=lambda r: (
            r["model"],
            r["precision"] != "float32",
            r["precision"],
            r["workload"] != "unique",
            r["workload"],
        ),
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def headline(targets: list[dict[str, Any]], text: str) -> float | None:
    """The value of the first target whose label holds ``text`` (None: not measured)."""
    return next((t["value"] for t in targets if text in t["target"]), None)


def _row(report: dict[str, Any], targets: list[dict[str, Any]], link: str) -> str:
    judged = [t for t in targets if t["verdict"] in ("PASS", "FAIL")]
    met = sum(t["verdict"] == "PASS" for t in judged)
    cells = [
        f"[{link}]({link})",
        report["model"],
        report["precision"],
        f"`{report['workload']}`",
        *(_fmt(headline(targets, text), ".2f") for text in HEADLINES),
        f"{met} of {len(judged)}",
    ]
    return "| " + " | ".join(cells) + " |"


def render_latest(reports: list[dict[str, Any]], results_dir: Path) -> str:
    """The summary: one row per report, then each report's targets with their verdicts."""
    lines = [
        "# The latest `make bench` figures",
        "",
        "Written by `make bench` (`benchmarks/latest.py`) from the newest full run's reports",
        "in this folder; do not edit. Ratios are the service's over the one-process LiteRT",
        "server's, measured in the same run (absolute figures swing between days; the",
        "targets: [benchmarks/README.md](../README.md#report)).",
        "",
    ]
    if not reports:
        return "\n".join([*lines, "No full run's report yet.", ""])
    c = TARGET_CONCURRENCY
    lines += [
        f"Run of {reports[0]['date']}. {format_machine(reports[0]['machine'])}",
        "",
        f"| report | model | precision | workload | req/s at c={c}, service / one-process "
        "| p50 at c=1, service / one-process | service PSS GiB | targets met (goals too) |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    sections = []
    for report in reports:
        targets = report.get("targets") or evaluate_targets(report)
        link = report_stem(report, results_dir).with_suffix(".md").name
        lines.append(_row(report, targets, link))
        sections += [
            "",
            f"## [{report['model']}, {report['precision']}, `{report['workload']}`]({link})",
            "",
            "| target | value | threshold | verdict |",
            "|---|---:|---:|---|",
        ]
        sections += [
            f"| {t['target']} | {_fmt(t['value'], '.2f')} | {_fmt(t['threshold'], '.2f')} "
            f"| {t['verdict']} |"
            for t in targets
        ]
    return "\n".join([*lines, *sections, ""])


def write_latest(results_dir: Path) -> Path:
    """Rewrite ``LATEST.md`` from the reports in ``results_dir``; returns its path."""
    path = results_dir / LATEST_NAME
    path.write_text(render_latest(newest_reports(results_dir), results_dir))
    return path


if __name__ == "__main__":
    print(f"wrote {write_latest(Path(__file__).resolve().parent / 'results')}")
