"""Turn the ``SOURCE`` arguments of ``imagetagger tag`` into the list of inputs to tag.

A source is a file, a directory (walked recursively), a glob, an http(s) URL, or a
manifest: a ``.txt`` file with one path or URL per line, or a ``.csv`` file with a
``path`` or ``url`` column. Each input becomes exactly one output row, so nothing a
user named is ever dropped silently: what is left out is counted by reason.

Inside directories and glob matches, hidden entries (a name starting with ``.``) and
files whose extension is not an image format's are skipped; a file named explicitly,
or listed in a manifest, is always tagged (and gets an ``InvalidImage`` row if it is
not an image). Local paths are made absolute, so rows name files unambiguously.
"""

from __future__ import annotations

import csv
import functools
import glob
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

InputKind = Literal["path", "url"]

#: Reasons an entry is left out, as the summary line names them.
SKIP_HIDDEN = "hidden"
SKIP_NOT_IMAGE = "not an image"
SKIP_DUPLICATE = "duplicate"

MANIFEST_EXTENSIONS = (".txt", ".csv")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Input:
    """One thing to tag: a local file (absolute path) or a URL, exactly as listed."""

    kind: InputKind
    source: str


@dataclass
class Collection:
    """The inputs in the order found (duplicates removed) and what was skipped, by reason."""

    inputs: list[Input] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, item: Input, seen: set[Input]) -> None:
        if item in seen:
            self.skipped[SKIP_DUPLICATE] += 1
            return
        seen.add(item)
        self.inputs.append(item)


@functools.cache
def image_extensions() -> frozenset[str]:
    """Lower-case extensions (with the dot) of the formats the decoder accepts."""
    from PIL import Image

    from imagetagger.images import ALLOWED_FORMATS

    Image.init()
    formats = {*ALLOWED_FORMATS, "MPO"}
    return frozenset(
        ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in formats
    )


def is_url(text: str) -> bool:
    """``scheme://...``: fetched (and refused unless http or https), never opened as a file."""
    return bool(_URL.match(text))


def collect(sources: Sequence[str]) -> Collection:
    """Expand ``sources`` into inputs; a glob that matches nothing is a ``ValueError``."""
    collection = Collection()
    seen: set[Input] = set()
    for source in sources:
        for item in _expand(source, collection.skipped):
            collection.add(item, seen)
    return collection


def _expand(source: str, skipped: Counter[str]) -> Iterator[Input]:
    if is_url(source):
        yield Input("url", source)
    elif os.path.isdir(source):
        yield from _walk(source, skipped)
    elif os.path.isfile(source) and source.lower().endswith(MANIFEST_EXTENSIONS):
        yield from read_manifest(source)
    elif os.path.lexists(source) or not _GLOB_CHARS.intersection(source):
        yield Input("path", os.path.abspath(source))  # a missing file gets its error row
    else:
        matches = sorted(glob.glob(source, recursive=True))
        if not matches:
            raise ValueError(f"{source}: no file matches this pattern")
        for match in matches:
            if os.path.isdir(match):
                yield from _walk(match, skipped)
            else:
                yield from _filtered([match], skipped)


def _walk(directory: str, skipped: Counter[str]) -> Iterator[Input]:
    """Every image file under ``directory``, sorted; hidden directories are not entered."""
    for root, dirs, files in os.walk(directory):
        if hidden_dirs := [name for name in dirs if name.startswith(".")]:
            skipped[SKIP_HIDDEN] += len(hidden_dirs)
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        yield from _filtered((os.path.join(root, name) for name in sorted(files)), skipped)


def _filtered(paths: Iterable[str], skipped: Counter[str]) -> Iterator[Input]:
    extensions = image_extensions()
    for path in paths:
        name = os.path.basename(path)
        if name.startswith("."):
            skipped[SKIP_HIDDEN] += 1
        elif os.path.splitext(name)[1].lower() not in extensions:
            skipped[SKIP_NOT_IMAGE] += 1
        else:
            yield Input("path", os.path.abspath(path))


def read_manifest(path: str) -> Iterator[Input]:
    """The entries of a ``.txt`` or ``.csv`` manifest; relative paths are the manifest's.

    ``.txt``: one path or URL per line; blank lines and lines starting with ``#`` are
    ignored. ``.csv``: a header with a ``url`` and/or a ``path`` column; in each row
    the ``url`` cell wins when both are filled, and rows with neither are ignored.
    """
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8-sig", newline="") as file:
        is_csv = path.lower().endswith(".csv")
        entries = _csv_entries(path, file) if is_csv else _txt_entries(file)
        for kind, text in entries:
            if kind == "url" or (kind is None and is_url(text)):
                yield Input("url", text)
            else:
                yield Input("path", os.path.normpath(os.path.join(base, text)))


def _txt_entries(lines: Iterable[str]) -> Iterator[tuple[InputKind | None, str]]:
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            yield None, text


def _csv_entries(path: str, file: Iterable[str]) -> Iterator[tuple[InputKind | None, str]]:
    reader = csv.DictReader(file)
    columns = {name.strip().lower(): name for name in reader.fieldnames or ()}
    if "url" not in columns and "path" not in columns:
        raise ValueError(f"{path}: a CSV manifest needs a 'path' or 'url' column")
    for row in reader:
        url = _cell(row, columns.get("url"))
        local = _cell(row, columns.get("path"))
        if url:
            yield "url", url
        elif local:
            yield "path", local


def _cell(row: dict[str, str | None], column: str | None) -> str:
    return (row.get(column) or "").strip() if column else ""
