"""Ways a cache file gets damaged (a crash mid-write, a bad disk, a lost sidecar), shared
by the weight-cache and LiteRT-cache tests: each must be detected and the file rebuilt."""

from __future__ import annotations

from pathlib import Path


def garbage(path: Path) -> None:
    path.write_bytes(b"not a model file")


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def drop_sidecar(path: Path) -> None:
    path.with_name(path.name + ".sha256").unlink()


DAMAGES = [garbage, flip_a_byte, truncate, drop_sidecar]
