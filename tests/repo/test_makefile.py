"""`make test` alone on a fresh Debian machine: the system packages its tests need.

scripts/test_system_packages.sh runs with PATH pointing at a folder of stub commands
(``id``, ``apt-get``, ``chromium``, ``chromedriver``) and the WordNet file it checks named by
``IMAGETAGGER_WORDNET_NOUN``, so nothing is installed and nothing real is looked at.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

REPO = REPO_ROOT
SCRIPT = REPO / "scripts" / "test_system_packages.sh"
PACKAGES = "chromium chromium-driver wordnet-base"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(0o755)


def _run(
    tmp_path: Path, *, uid: int, browser: bool, wordnet: bool, apt: bool = True
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt-get.log"
    _stub(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    if apt:
        _stub(bin_dir, "apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {log}')
    if browser:
        _stub(bin_dir, "chromium", "exit 0")
        _stub(bin_dir, "chromedriver", "exit 0")
    noun = tmp_path / "data.noun"
    if wordnet:
        noun.write_text("", encoding="utf-8")
    result = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(bin_dir), "IMAGETAGGER_WORDNET_NOUN": str(noun)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return result, calls


def test_nothing_is_installed_when_the_packages_are_present(tmp_path: Path) -> None:
    result, calls = _run(tmp_path, uid=0, browser=True, wordnet=True)
    assert result.returncode == 0, result.stderr
    assert calls == []
    assert result.stderr == ""


@pytest.mark.parametrize(("browser", "wordnet"), [(False, True), (True, False), (False, False)])
def test_root_installs_the_packages_when_any_is_missing(
    tmp_path: Path, browser: bool, wordnet: bool
) -> None:
    result, calls = _run(tmp_path, uid=0, browser=browser, wordnet=wordnet)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "noninteractive update -qq",
        f"noninteractive install -y -qq {PACKAGES}",
    ]


@pytest.mark.parametrize(("uid", "apt"), [(1000, True), (0, False)])
def test_without_root_or_apt_it_prints_the_command_and_fails(
    tmp_path: Path, uid: int, apt: bool
) -> None:
    result, calls = _run(tmp_path, uid=uid, browser=False, wordnet=True, apt=apt)
    assert result.returncode != 0
    assert calls == []
    assert f"sudo apt-get install {PACKAGES}" in result.stderr
    assert "chromium" in result.stderr.splitlines()[0]


def test_make_test_runs_the_script_before_pytest() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    lines = [line.strip() for line in recipe.group(1).splitlines()]
    assert lines.index("scripts/test_system_packages.sh") < next(
        i for i, line in enumerate(lines) if "pytest" in line
    )


def test_ci_runs_make_test_alone() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        line
        for line in ci.splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == ["make test"]
