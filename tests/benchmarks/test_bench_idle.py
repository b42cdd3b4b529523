"""benchmarks/idle.py's arithmetic and report lines (no service: CPU samples made up)."""

from __future__ import annotations

from benchmarks.idle import idle_by_role, idle_lines


def test_idle_is_cpu_ms_per_second_by_role_with_new_processes_counted_whole() -> None:
    before = {1: ("ServeController", 10.0), 2: ("raylet", 5.0), 3: ("raylet", 1.0)}
    after = {
        1: ("ServeController", 10.6),
        2: ("raylet", 5.1),
        3: ("raylet", 1.2),
        4: ("ImageTagger", 0.06),  # started inside the window
    }
    assert idle_by_role(before, after, 60.0) == {
        "ServeController": 10.0,
        "raylet (x2)": 5.0,
        "ImageTagger": 1.0,
    }


def test_the_report_shows_the_idle_line_only_where_it_was_measured() -> None:
    idle = {
        "total_ms_per_s": 16.0,
        "by_role_ms_per_s": {"ServeController": 10.0, "raylet (x2)": 6.0},
        "processes": 3,
        "pss_mib": 1400,
        "window_s": 60.0,
    }
    lines = idle_lines({"service": {"idle": idle}})
    assert lines[1].startswith(
        "Idle (no request, 60.0 s after a 30 s settle): the whole service 16.0"
    )
    assert "| raylet (x2) | 6.0 |" in lines[3]
    assert idle_lines({"service": {"levels": []}}) == [] == idle_lines({"service": None})


def test_the_report_puts_rays_floor_beside_the_service() -> None:
    service = {
        "total_ms_per_s": 16.0,
        "by_role_ms_per_s": {"ServeController": 10.0, "ImageTagger": 6.0},
        "processes": 2,
        "pss_mib": 1400,
        "window_s": 60.0,
    }
    floor = {
        **service,
        "total_ms_per_s": 20.0,
        "by_role_ms_per_s": {"ServeController": 12.0, "raylet": 8.0},
    }
    lines = idle_lines({"service": {"idle": service}, "floor": {"idle": floor}})
    assert lines[1].endswith("; Ray's floor 20.0 ms/s, PSS 1400 MiB (service / floor 0.80).")
    table = lines[3].splitlines()
    assert table[0] == "| process | service ms/s | Ray's floor ms/s |"
    assert "| ImageTagger | 6.0 | - |" in table and "| raylet | - | 8.0 |" in table
    assert "| **whole** | **16.0** | **20.0** |" in table
