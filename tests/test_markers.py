"""``make test-fast`` ("no Ray, no Serve") must collect no test that starts Ray.

The markers are set in ``tests/conftest.py`` from where a test is and what it uses; a
new module that starts Ray some other way would slip into the fast run unmarked. This
collects the fast selection exactly as the Makefile does and checks it against every
module whose source starts Ray.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FAST_SELECTION = "not service and not ray and not models"
# What starting Ray looks like in a test module: ray.init, a multi-node Cluster, a
# scenario run in a child, Serve itself.
STARTS_RAY = re.compile(r"ray\.init\(|cluster_utils|tests\.cluster\.scenarios|serve\.run\(")


def collected(paths: list[Path], selection: str | None) -> set[Path]:
    """The test files of ``paths`` pytest collects with ``-m selection`` (as ``make
    test-fast`` selects), collected in a child pytest."""
    marks = ["-m", selection] if selection else []
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + marks
        + [str(path) for path in paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # 5: no test collected (all deselected), the answer hoped for under the selection
    assert result.returncode in (0, 5), result.stdout[-2000:] + result.stderr[-2000:]
    ids = [line for line in result.stdout.splitlines() if "::" in line]
    return {ROOT / line.split("::", 1)[0] for line in ids}


def modules_that_start_ray() -> set[Path]:
    return {
        path
        for path in TESTS.rglob("test_*.py")
        if path != Path(__file__).resolve() and STARTS_RAY.search(path.read_text())
    }


def test_the_fast_selection_collects_no_module_that_starts_ray() -> None:
    starting = modules_that_start_ray()
    assert TESTS / "test_cluster.py" in starting  # the check sees the known case
    # Only these modules and tests/service are collected (the whole tree's collection
    # would import TensorFlow for nothing): without the selection each yields tests...
    paths = [*sorted(starting), TESTS / "service"]
    everything = collected(paths, None)
    assert starting <= everything and any(TESTS / "service" in p.parents for p in everything)
    # ...and under it none does.
    assert collected(paths, FAST_SELECTION) == set()


def test_the_makefile_runs_that_selection() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert f'-m "{FAST_SELECTION}"' in makefile
