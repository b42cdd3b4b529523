"""make bench's targets and report, on made-up measurements."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import (
    GIB,
    MIB,
    cpu_table,
    evaluate_targets,
    render_markdown,
    repeat_vs_unique,
    report_stem,
)


def _level(c: int, rps: float, p50: float, cpu: dict[str, float] | None = None) -> dict[str, Any]:
    return {
        "concurrency": c,
        "req_per_s": rps,
        "p50_ms": p50,
        "p95_ms": p50 * 2,
        "p99_ms": p50 * 3,
        "errors": 0,
        "cpu_ms_per_request": cpu or {},
        "load_generator_cpu_ms_per_request": 1.0,
        "photo_server_cpu_ms_per_request": 0.5,
    }


def _server(levels: list[dict[str, Any]], pss: float) -> dict[str, Any]:
    return {"levels": levels, "memory": {"pss_bytes": int(pss), "processes": 3}, "stop_s": 2.0}


def _bare(runtime: str) -> dict[str, Any]:
    return {
        "runtime": runtime,
        "workers": 2,
        "input_size": 260,
        "best_batch": 1,
        "model_img_s": 70.0,
        "batch1_ms": 28.0,
        "decode_ms_mean": 3.0,
        "decode_ms": {"a": 3.0},
        "ceiling_req_s": 60.0,
    }


@pytest.fixture
def report() -> dict[str, Any]:
    """Every target passes: 0.95x the peer, +4 ms at c=1, 1.4 GiB, 150 MiB over the floor."""
    service_cpu = {"ModelDeployment": 20.0, "Downloader": 6.0, "ImageTagger": 4.0}
    return {
        "model": "efficientnet_lite2",
        "precision": "float32",
        "workload": "unique",
        "date": "2026-12-01",
        "settings": {
            "concurrencies": [1, 32],
            "duration_s": 15,
            "warmup_s": 5,
            "top": 5,
            "quick": False,
            "serve_config": "serve_config.yaml",
            "served_options": {},
        },
        "photos_description": "100 photos",
        "machine": {
            "cpu_model": "x",
            "cpus_usable": 2,
            "cpu_count": 2,
            "platform": "p",
            "python": "3.11",
            "versions": {},
        },
        "bare_tensorflow": _bare("tensorflow"),
        "bare_served": _bare("litert"),
        "service": _server([_level(1, 30, 34.0), _level(32, 57.0, 500, service_cpu)], 1.4 * GIB),
        "service_repeat": _server([_level(32, 120.0, 250)], 1.4 * GIB),
        "peer": _server(
            [_level(1, 35, 30.0), _level(32, 60.0, 480, {"litert_server.py": 28.0})], 0.2 * GIB
        ),
        "naive": _server(
            [_level(1, 30, 32.0), _level(32, 45.0, 600, {"naive_server.py": 40.0})], 1.0 * GIB
        ),
        "floor": _server(
            [_level(1, 150, 6.0), _level(32, 390.0, 80, {"ImageTagger": 2.0})],
            1.4 * GIB - 150 * MIB,
        ),
    }


def _set_pss(report: dict[str, Any], service: float, floor: float) -> None:
    report["service"]["memory"]["pss_bytes"] = int(service)
    report["floor"]["memory"]["pss_bytes"] = int(floor)


def test_all_targets_pass(report: dict[str, Any]) -> None:
    targets = evaluate_targets(report)
    by_label = {t["target"]: t for t in targets}
    assert [t["verdict"] for t in targets] == ["PASS", "FAIL", "PASS", "PASS", "PASS", "PASS"] + [
        "n/a"
    ] * 2  # the goal (1.0x) is missed at 0.95x; the last two only report
    peer = by_label["service req/s at c=32 / LiteRT one-process >= 0.9"]
    assert peer["value"] == pytest.approx(0.95)
    assert by_label["service p50 ms at c=1 <= LiteRT one-process p50 + 5 ms"]["threshold"] == 35.0
    assert by_label["service PSS - Ray floor PSS, MiB <= 200"]["value"] == pytest.approx(150.0)
    assert by_label["(report) service / naive TensorFlow req/s at c=32"]["value"] == pytest.approx(
        57 / 45, abs=1e-3
    )


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        (lambda r: r["service"]["levels"][1].update(req_per_s=53.9), "service req/s at c=32"),
        (lambda r: r["service"]["levels"][0].update(p50_ms=35.1), "service p50 ms at c=1"),
        (lambda r: _set_pss(r, 1.51 * GIB, 1.51 * GIB - 150 * MIB), "whole service PSS"),
        (lambda r: _set_pss(r, 1.4 * GIB, 1.4 * GIB - 201 * MIB), "service PSS - Ray"),
        (lambda r: r["service_repeat"]["levels"][0].update(req_per_s=113.9), "(issue 18)"),
    ],
)
def test_each_target_fails_past_its_threshold(report: dict[str, Any], change, failed: str) -> None:
    change(report)
    failing = [t["target"] for t in evaluate_targets(report) if t["verdict"] == "FAIL"]
    assert [t for t in failing if not t.startswith("(goal)")] == [
        t for t in failing if t.startswith(failed)
    ]
    assert any(t.startswith(failed) for t in failing)


def test_targets_are_not_applicable_without_their_measurements(report: dict[str, Any]) -> None:
    for key in ("peer", "floor", "service_repeat"):
        report[key] = None
    verdicts = [t["verdict"] for t in evaluate_targets(report)]
    assert verdicts == ["n/a", "n/a", "n/a", "PASS", "n/a", "n/a", "n/a", "n/a"]
    report["service"] = None
    assert {t["verdict"] for t in evaluate_targets(report)} == {"n/a"}


def test_repeat_is_compared_at_its_own_concurrency(report: dict[str, Any]) -> None:
    assert repeat_vs_unique(report) == (32, pytest.approx(120 / 57))
    report["service_repeat"]["levels"][0]["concurrency"] = 1
    assert repeat_vs_unique(report) == (1, pytest.approx(120 / 30))


def test_cpu_table_puts_the_servers_side_by_side(report: dict[str, Any]) -> None:
    lines = cpu_table(report)
    assert lines[2] == "| process | service | Ray floor | LiteRT one-process | naive TensorFlow |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[4:]}
    assert rows["litert_server.py"] == "| litert_server.py | - | - | 28.00 | - |"
    assert rows["ImageTagger"] == "| ImageTagger | 4.00 | 2.00 | - | - |"
    assert rows["**server total**"].endswith("**30.00** | **2.00** | **28.00** | **40.00** |")
    assert rows["photo server"] == "| photo server | 0.50 | 0.50 | 0.50 | 0.50 |"
    report["settings"]["concurrencies"] = [1, 8]  # no c=32: the highest one measured
    report["service"]["levels"][1]["concurrency"] = 8
    assert cpu_table(report)[0].startswith("CPU per answered request at c=8,")
    assert cpu_table(report)[2] == "| process | service |"


def test_markdown_has_the_headline_ratio_and_every_server(report: dict[str, Any]) -> None:
    text = render_markdown(report)
    assert "| 32 | 57.00 | 60.00 | 0.95 | 500.0 | 480.0 | +20.0 |" in text
    for label in ("| 1 | service |", "| 1 | LiteRT one-process |", "| 32 | Ray floor |"):
        assert label in text
    assert "repeat / unique 2.11" in text


def test_report_file_names() -> None:
    base = {"date": "2026-12-01", "model": "m", "precision": "float32", "workload": "unique"}
    base["settings"] = {"quick": False}
    assert report_stem(base, Path("r")).name == "2026-12-01-m"
    other = copy.deepcopy(base) | {"precision": "int8", "workload": "repeat"}
    other["settings"] = {"quick": True}
    assert report_stem(other, Path("r")).name == ("2026-12-01-m-int8-repeat-quick")
