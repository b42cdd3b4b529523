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
    """Every target passes, both goals miss: 0.97x the peer at c=32, 1.13x its p50 at
    c=1, 1.4 GiB, 150 MiB over the floor, repeat 2.07x unique."""
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
        "service": _server([_level(1, 30, 34.0), _level(32, 58.0, 500, service_cpu)], 1.4 * GIB),
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
    assert [t["verdict"] for t in targets] == [
        "PASS",  # 0.97x >= 0.95x
        "FAIL",  # goal 1.0x
        "PASS",  # p50 1.13x <= 1.2x
        "FAIL",  # goal 1.1x
        "PASS",
        "PASS",
        "PASS",
        "n/a",  # the last two only report
        "n/a",
    ]
    peer = by_label["service req/s at c=32 / LiteRT one-process >= 0.95"]
    assert peer["value"] == pytest.approx(58 / 60, abs=1e-3)
    p50 = by_label["service p50 at c=1 / LiteRT one-process p50 <= 1.2"]
    assert (p50["value"], p50["threshold"]) == (pytest.approx(34 / 30, abs=1e-3), 1.2)
    assert by_label["service PSS - Ray floor PSS, MiB <= 200"]["value"] == pytest.approx(150.0)
    assert by_label["(report) service / naive TensorFlow req/s at c=32"]["value"] == pytest.approx(
        58 / 45, abs=1e-3
    )


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        (lambda r: r["service"]["levels"][1].update(req_per_s=56.9), "service req/s at c=32"),
        (lambda r: r["service"]["levels"][0].update(p50_ms=36.1), "service p50 at c=1"),
        (lambda r: _set_pss(r, 1.51 * GIB, 1.51 * GIB - 150 * MIB), "whole service PSS"),
        (lambda r: _set_pss(r, 1.4 * GIB, 1.4 * GIB - 201 * MIB), "service PSS - Ray"),
        (lambda r: r["service_repeat"]["levels"][0].update(req_per_s=115.9), "(issue 18)"),
    ],
)
def test_each_target_fails_past_its_threshold(report: dict[str, Any], change, failed: str) -> None:
    change(report)
    failing = [t["target"] for t in evaluate_targets(report) if t["verdict"] == "FAIL"]
    assert [t for t in failing if not t.startswith("(goal)")] == [
        t for t in failing if t.startswith(failed)
    ]
    assert any(t.startswith(failed) for t in failing)


def test_int8_has_the_lower_throughput_bar(report: dict[str, Any]) -> None:
    report["service"]["levels"][1]["req_per_s"] = 55.0  # 0.917x the peer
    assert evaluate_targets(report)[0]["verdict"] == "FAIL"
    report["precision"] = "int8"
    first = evaluate_targets(report)[0]
    assert (first["target"], first["verdict"]) == (
        "service req/s at c=32 / LiteRT one-process >= 0.9",
        "PASS",
    )


def _phone(report: dict[str, Any], peer_rps: float, peer_p50: float) -> dict[str, Any]:
    report["workload"] = "phone"
    report["service_repeat"] = None
    report["peer"]["levels"][0]["p50_ms"] = peer_p50
    report["peer"]["levels"][1]["req_per_s"] = peer_rps
    return report


def test_phone_photos_have_their_own_targets(report: dict[str, Any]) -> None:
    targets = evaluate_targets(_phone(report, peer_rps=20.0, peer_p50=120.0))
    assert [(t["target"], t["verdict"]) for t in targets] == [
        ("(phone) service req/s at c=32 / LiteRT one-process >= 2.5", "PASS"),  # 2.9x
        ("(phone) service p50 at c=1 / LiteRT one-process p50 < 1", "PASS"),  # 34 vs 120 ms
        ("whole service PSS GiB <= 1.5", "PASS"),
        ("service PSS - Ray floor PSS, MiB <= 200", "PASS"),
        ("(report) service / naive TensorFlow req/s at c=32", "n/a"),
        ("(report) service req/s at c=32 / bare litert ceiling", "n/a"),
    ]
    assert targets[0]["value"] == pytest.approx(2.9)


@pytest.mark.parametrize(
    ("peer_rps", "peer_p50", "failed"),
    [(23.3, 120.0, "(phone) service req/s"), (20.0, 34.0, "(phone) service p50")],
)
def test_phone_targets_fail_past_their_thresholds(
    report: dict[str, Any], peer_rps: float, peer_p50: float, failed: str
) -> None:
    """2.49x the peer fails; a p50 equal to the peer's is not below it."""
    targets = evaluate_targets(_phone(report, peer_rps, peer_p50))
    assert [t["target"] for t in targets if t["verdict"] == "FAIL"] == [
        t["target"] for t in targets if t["target"].startswith(failed)
    ]


def test_targets_are_not_applicable_without_their_measurements(report: dict[str, Any]) -> None:
    for key in ("peer", "floor", "service_repeat"):
        report[key] = None
    verdicts = [t["verdict"] for t in evaluate_targets(report)]
    assert verdicts == ["n/a"] * 4 + ["PASS"] + ["n/a"] * 4
    report["service"] = None
    assert {t["verdict"] for t in evaluate_targets(report)} == {"n/a"}


def test_repeat_is_compared_at_its_own_concurrency(report: dict[str, Any]) -> None:
    assert repeat_vs_unique(report) == (32, pytest.approx(120 / 58))
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
    assert "| 32 | 58.00 | 60.00 | 0.97 | 500.0 | 480.0 | +20.0 |" in text
    for label in ("| 1 | service |", "| 1 | LiteRT one-process |", "| 32 | Ray floor |"):
        assert label in text
    assert "repeat / unique 2.07" in text


def test_phone_markdown_names_the_workload_and_has_no_repeat_line(report: dict[str, Any]) -> None:
    text = render_markdown(_phone(report, peer_rps=20.0, peer_p50=120.0))
    assert "`phone` workload" in text
    assert "| (phone) service req/s at c=32 / LiteRT one-process >= 2.5 | 2.90 | 2.50 | PASS |" in (
        text
    )
    assert "repeat /" not in text


def test_report_file_names() -> None:
    base = {"date": "2026-12-01", "model": "m", "precision": "float32", "workload": "unique"}
    base["settings"] = {"quick": False}
    assert report_stem(base, Path("r")).name == "2026-12-01-m"
    other = copy.deepcopy(base) | {"precision": "int8", "workload": "repeat"}
    other["settings"] = {"quick": True}
    assert report_stem(other, Path("r")).name == ("2026-12-01-m-int8-repeat-quick")
    phone = base | {"workload": "phone"}
    assert report_stem(phone, Path("r")).name == "2026-12-01-m-phone"
