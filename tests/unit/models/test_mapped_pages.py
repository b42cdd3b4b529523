"""A mapped model file's pages are given back, and the mapping still reads the same."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest

from imagetagger.models.mapped_pages import mapped_ranges, release_mapped_pages

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc/self/maps is Linux's")


def _resident_kib(path: Path) -> int:
    """Rss of this process's mappings of ``path``, from /proc/self/smaps."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header
            inside = len(fields) == 6 and fields[5] == str(path.resolve())
        elif inside and fields[0] == "Rss:":
            total += int(fields[1])
    return total


def test_release_drops_the_resident_pages_and_keeps_the_contents(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    content = bytes(range(256)) * (4 * 4096)  # 4 MiB
    path.write_bytes(content)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert mapped[:] == content  # every page read: resident
        assert _resident_kib(path) >= 4096
        assert release_mapped_pages(path) == len(content)
        assert _resident_kib(path) == 0
        assert mapped[:] == content  # faulted back from the page cache, unchanged


def test_mapped_ranges_match_the_path_exactly() -> None:
    maps = (
        "7f0000000000-7f0000001000 r--s 00000000 00:2a 123   /cache/model.tflite\n"
        "7f0000002000-7f0000004000 r--s 00000000 00:2a 123   /cache/model.tflite\n"
        "7f0000005000-7f0000006000 r--s 00000000 00:2a 124   /cache/model.tflite.sha256\n"
        "7f0000007000-7f0000008000 rw-p 00000000 00:00 0 \n"
    )
    assert mapped_ranges(Path("/cache/model.tflite"), maps) == [
        (0x7F0000000000, 0x7F0000001000),
        (0x7F0000002000, 0x7F0000004000),
    ]


def test_a_file_that_is_not_mapped_releases_nothing(tmp_path: Path) -> None:
    path = tmp_path / "unmapped.tflite"
    path.write_bytes(b"\0" * 4096)
    assert release_mapped_pages(path) == 0
