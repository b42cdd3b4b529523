"""Where the repository and the test data are, for tests at any depth of ``tests/``."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS = REPO_ROOT / "tests"
TEST_DATA = TESTS / "data"
