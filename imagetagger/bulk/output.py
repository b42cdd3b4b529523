"""Write the result rows to one JSONL or Parquet file, on any filesystem pyarrow knows.

The driver writes the rows as the pipeline streams them out (``iter_batches``), so
``--out`` is one file, as a user expects, rather than the directory of shards Ray
Data's own writers make; a row is a path and a few labels, so this is never the
bottleneck, and memory stays bounded. The file is written under a temporary name and
moved into place at the end: a job that fails leaves no half-written file at ``PATH``.
``PATH`` may be a local path or a URI such as ``s3://bucket/tags.parquet``.
"""

from __future__ import annotations

import json
import os
import uuid
from types import TracebackType
from typing import Literal, Self

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from imagetagger.bulk.stages import RESULT_SCHEMA

OutputFormat = Literal["jsonl", "parquet"]
FORMATS: tuple[OutputFormat, ...] = ("jsonl", "parquet")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def format_for(path: str) -> OutputFormat:
    """The format a path's extension implies: Parquet for ``.parquet``/``.pq``, else JSONL."""
    return "parquet" if path.lower().endswith(_PARQUET_SUFFIXES) else "jsonl"


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and the path inside it: URIs by scheme, anything else local."""
    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), os.path.abspath(path)


def json_lines(table: pa.Table) -> str:
    """Result rows as JSON lines, in the API's shape: absent keys rather than nulls."""
    return "".join(
        json.dumps({key: value for key, value in row.items() if value is not None}) + "\n"
        for row in table.to_pylist()
    )


class ResultWriter:
    """``with ResultWriter(path, fmt) as writer: writer.write(table)`` for each batch."""

    def __init__(self, path: str, fmt: OutputFormat) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.format = fmt
        self._fs, self._path = resolve(path)
        parent = os.path.dirname(self._path)
        if parent:
            self._fs.create_dir(parent, recursive=True)
        self._partial = f"{self._path}.partial-{uuid.uuid4().hex[:8]}"
        self._stream = self._fs.open_output_stream(self._partial)
        self._parquet = pq.ParquetWriter(self._stream, RESULT_SCHEMA) if fmt == "parquet" else None

    def write(self, table: pa.Table) -> None:
        table = table.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA)
        if self._parquet is not None:
            self._parquet.write_table(table)
        else:
            self._stream.write(json_lines(table).encode())

    def close(self, *, commit: bool = True) -> None:
        """Finish the file and move it to ``PATH`` (``commit=False``: delete it instead)."""
        if self._parquet is not None:
            self._parquet.close()
        self._stream.close()
        if commit:
            self._fs.move(self._partial, self._path)
        else:
            self._fs.delete_file(self._partial)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(commit=exc_type is None)
