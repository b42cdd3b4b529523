"""make bench's workloads: the argument, and one report per workload from one start of
each server (fake servers and measurements: no Ray, no model)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_service
from benchmarks.bench_service import parse_settings, photo_workloads, repeat_base
from benchmarks.photos import Photo


def test_workloads_default_to_512_px_and_phone_photos() -> None:
    _, settings = parse_settings([])
    assert settings.workloads == ("unique", "phone")
    assert photo_workloads(settings) == ("unique", "phone", "repeat")


@pytest.mark.parametrize(
    ("argv", "workloads"),
    [
        (["--workload", "phone"], ("phone",)),  # the old spelling still works
        (["--workloads", "mixed"], ("mixed",)),
        (["--workloads", "phone", "unique", "phone"], ("phone", "unique")),
    ],
)
def test_workloads_argument(argv: list[str], workloads: tuple[str, ...]) -> None:
    assert parse_settings(argv)[1].workloads == workloads


def test_unknown_workload_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--workloads", "unique", "huge"])


@pytest.mark.parametrize(
    ("workloads", "base"),
    [
        (("unique", "phone"), "unique"),
        (("phone", "unique"), "unique"),
        (("phone",), None),  # 12-MP photos are no base for a 512-px repeated one
        (("repeat", "mixed"), "mixed"),
    ],
)
def test_repeat_level_follows_a_512_px_or_mixed_workload(
    workloads: tuple[str, ...], base: str | None
) -> None:
    assert repeat_base(workloads) == base


def test_phone_alone_serves_no_512_px_photos() -> None:
    _, settings = parse_settings(["--workload", "phone", "--quick"])
    assert photo_workloads(settings) == ("phone",)


class _FakePhotos:
    process = None

    def workload(self, name: str) -> str:
        return name


def _fake_photos(workload: str) -> tuple[Photo, ...]:
    """100 named photos per workload (the phone set takes tens of seconds to build)."""
    prefix = {"unique": "u", "phone": "p", "repeat": "u"}[workload]
    photos = tuple(Photo(f"{prefix}{i:03d}.jpg", b"", 1, 1, "image/jpeg") for i in range(100))
    return photos[:1] if workload == "repeat" else photos


@pytest.fixture
def fake_bench(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every server started and every measurement taken, as (server, what) pairs."""
    events: list[tuple[str, str]] = []

    def server(name: str):
        @contextmanager
        def start(*_args: Any, **_kwargs: Any) -> Iterator[Any]:
            events.append((name, "start"))
            fake = bench_service.RunningServer(name, "http://x", name, None, Path("log"))
            yield fake
            fake.stop_s = 1.0

        return start

    def load(running: Any, workload: str, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        events.append((running.name, workload))
        return {"levels": [], "memory": {"pss_bytes": 100, "processes": 1}}

    def level(running: Any, workload: str, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        events.append((running.name, workload))
        return {"concurrency": 32}

    for name in ("service", "peer", "naive", "floor"):
        monkeypatch.setattr(bench_service, f"run_{name}", server(name))
    monkeypatch.setattr(bench_service, "measure_load", load)

    def traced(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        events.append(("traced", "unique"))  # its own services (benchmarks/traced.py)
        return {"workload": "unique", "runs": {}}

    monkeypatch.setattr(bench_service, "measure_traced", traced)

    def idle(running: Any) -> dict[str, Any]:
        events.append((running.name, "idle"))  # before the service's first load
        return {"total_ms_per_s": 50.0}

    monkeypatch.setattr(bench_service, "measure_idle", idle)
    monkeypatch.setattr(bench_service, "measure_level", level)
    monkeypatch.setattr(
        bench_service, "memory_snapshot", lambda _t: {"pss_bytes": 200, "processes": 1}
    )
    monkeypatch.setattr(bench_service, "measure_model", lambda *_a, **_k: {"model_img_s": 50.0})
    monkeypatch.setattr(
        bench_service, "measure_decode", lambda _m, photos, **_k: {p.name: 0.01 for p in photos}
    )
    monkeypatch.setattr(bench_service, "workload_photos", _fake_photos)
    monkeypatch.setattr(bench_service, "machine_info", dict)
    monkeypatch.setattr(bench_service, "evaluate_targets", lambda _r: [])
    return events


def test_each_server_starts_once_and_reports_every_workload(
    fake_bench: list[tuple[str, str]], tmp_path: Path
) -> None:
    _, settings = parse_settings(["--quick"])
    reports = bench_service.bench_model(
        "efficientnet_lite2",
        _FakePhotos(),
        settings,
        config_source=bench_service.ROOT / "serve_config.yaml",
        workdir=tmp_path,
        precisions=["float32", "int8"],
    )
    assert [(r["precision"], r["workload"]) for r in reports] == [
        ("float32", "unique"),
        ("float32", "phone"),
        ("int8", "unique"),
        ("int8", "phone"),
    ]
    assert fake_bench == [
        ("naive", "start"),
        ("naive", "unique"),
        ("naive", "phone"),
        ("floor", "start"),
        ("floor", "idle"),  # beside the service's, before its load
        ("floor", "unique"),  # the floor fetches nothing: one workload is enough
        *[
            ("peer", "start"),
            ("peer", "unique"),
            ("peer", "phone"),
            ("service", "start"),
            ("service", "idle"),
            ("service", "unique"),
            ("service", "repeat"),  # right after the 512-px levels
            ("service", "phone"),
            ("traced", "unique"),  # the first workload only
        ]
        * 2,
    ]
    unique, phone = reports[:2]
    assert unique["service_repeat"] is not None and phone["service_repeat"] is None
    assert unique["service_traced"] is not None and phone["service_traced"] is None
    assert unique["floor"] is phone["floor"]
    assert unique["service"]["idle"] == phone["service"]["idle"] == {"total_ms_per_s": 50.0}
    assert unique["floor"]["idle"] == {"total_ms_per_s": 50.0}
    assert unique["service"]["memory"]["pss_bytes"] == 200  # the repeat level's, higher
    assert phone["photos"] == unique["photos"] == 100
    assert phone["bare_served"]["decode_ms"].keys() != unique["bare_served"]["decode_ms"].keys()
    assert {r["service"]["stop_s"] for r in reports} == {1.0}
