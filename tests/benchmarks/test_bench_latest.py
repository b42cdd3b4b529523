"""benchmarks/results/LATEST.md: the newest full run's headline ratios, written by make bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.latest import HEADLINES, newest_reports, render_latest, write_latest
from benchmarks.report import report_stem
from tests.paths import REPO_ROOT

RESULTS = REPO_ROOT / "benchmarks" / "results"


def _target(label: str, value: float | None, verdict: str) -> dict[str, Any]:
    return {"target": label, "value": value, "threshold": 1.0, "verdict": verdict}


def _report(date: str, precision: str, workload: str, *, quick: bool = False) -> dict[str, Any]:
    machine = {"cpu_model": "x", "cpus_usable": 2, "cpu_count": 2, "platform": "p"}
    return {
        "model": "efficientnet_lite2",
        "precision": precision,
        "workload": workload,
        "date": date,
        "settings": {"quick": quick},
        "machine": {**machine, "python": "3.11", "versions": {}},
        "targets": [
            _target("service req/s at c=32 / LiteRT one-process >= 0.95", 0.91, "FAIL"),
            _target("service p50 at c=1 / LiteRT one-process p50 <= 1.2", 1.05, "PASS"),
            _target("whole service PSS GiB <= 1.5", 1.4, "PASS"),
            _target("(report) service / naive TensorFlow req/s at c=32", 1.3, "n/a"),
        ],
    }


def _write(folder: Path, report: dict[str, Any]) -> None:
    report_stem(report, folder).with_suffix(".json").write_text(json.dumps(report))


def test_the_summary_is_the_newest_full_run_with_links(tmp_path: Path) -> None:
    _write(tmp_path, _report("2026-12-01", "float32", "unique"))
    _write(tmp_path, _report("2026-12-02", "int8", "phone"))
    _write(tmp_path, _report("2026-12-02", "float32", "unique"))
    _write(tmp_path, _report("2026-12-03", "float32", "unique", quick=True))
    (tmp_path / "notes.json").write_text("[]")  # not a report: ignored

    path = write_latest(tmp_path)

    assert path == tmp_path / "LATEST.md"
    text = path.read_text()
    assert "Run of 2026-12-02." in text
    assert "2026-12-01" not in text and "quick" not in text
    float32, int8 = (
        "2026-12-02-efficientnet_lite2.md",
        "2026-12-02-efficientnet_lite2-int8-phone.md",
    )
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert rows == [
        f"| [{float32}]({float32}) | efficientnet_lite2 | float32 | `unique` "
        "| 0.91 | 1.05 | 1.40 | 2 of 3 |",
        f"| [{int8}]({int8}) | efficientnet_lite2 | int8 | `phone` | 0.91 | 1.05 | 1.40 | 2 of 3 |",
    ]
    assert f"## [efficientnet_lite2, int8, `phone`]({int8})" in text
    assert "| (report) service / naive TensorFlow req/s at c=32 | 1.30 | 1.00 | n/a |" in text


def test_no_full_run_yet(tmp_path: Path) -> None:
    _write(tmp_path, _report("2026-12-03", "float32", "unique", quick=True))
    assert "No full run's report yet." in write_latest(tmp_path).read_text()


def test_the_committed_summary_is_made_from_the_committed_reports() -> None:
    """LATEST.md is generated, never edited: README and docs/PERFORMANCE.md link to it."""
    assert (RESULTS / "LATEST.md").read_text() == render_latest(newest_reports(RESULTS), RESULTS)


def test_every_headline_is_a_target_of_the_real_reports() -> None:
    reports = newest_reports(RESULTS)
    assert reports
    for report in reports:
        labels = [target["target"] for target in report["targets"]]
        for text in HEADLINES:
            assert any(text in label for label in labels), (report["workload"], text)
