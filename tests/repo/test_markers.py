"""``make test-fast`` ("no Ray, no Serve") must select no test that starts Ray.

The markers are set in ``tests/conftest.py`` from where a test is and what it uses; a
new module that starts Ray some other way would slip into the fast run unmarked. This
checks every test of the running session whose module starts Ray against the fast
selection, evaluated as pytest's own ``-m`` evaluates it, in this process (a second
pytest collection cost ~20 s of the fast run). In ``make test`` that is every such test;
in ``make test-fast`` any such test that got through fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _pytest.mark import MarkMatcher
from _pytest.mark.expression import Expression

from tests.paths import TESTS

ROOT = TESTS.parent
FAST_SELECTION = "not service and not ray and not models"
# What starting Ray looks like in a test module: ray.init, a multi-node Cluster, a
# scenario run in a child, Serve itself.
STARTS_RAY = re.compile(r"ray\.init\(|cluster_utils|tests\.cluster\.scenarios|serve\.run\(")


def modules_that_start_ray() -> set[Path]:
    return {
        path
        for path in TESTS.rglob("test_*.py")
        if path != Path(__file__).resolve() and STARTS_RAY.search(path.read_text())
    }


def in_fast_selection(item: pytest.Item) -> bool:
    """Would ``-m FAST_SELECTION`` keep ``item``? (pytest's ``deselect_by_mark``.)"""
    matcher = MarkMatcher.from_markers(item.iter_markers())
    return Expression.compile(FAST_SELECTION).evaluate(matcher)


def test_the_fast_selection_keeps_no_test_that_starts_ray(request: pytest.FixtureRequest) -> None:
    starting = modules_that_start_ray()
    assert TESTS / "cluster" / "test_cluster.py" in starting  # the pattern sees the known case
    selected_here = [
        item for item in request.session.items if Path(item.path).resolve() in starting
    ]
    leaks = [item.nodeid for item in selected_here if in_fast_selection(item)]
    assert leaks == []


def test_the_check_tells_marked_from_unmarked(request: pytest.FixtureRequest) -> None:
    """The evaluation itself: this unmarked test is kept, a Ray-marked one is not."""
    assert in_fast_selection(request.node)
    request.node.add_marker(pytest.mark.ray)
    assert not in_fast_selection(request.node)


def test_the_makefile_runs_that_selection() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f'-m "{FAST_SELECTION}"' in makefile
