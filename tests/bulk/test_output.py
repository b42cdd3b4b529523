"""Result rows to one JSONL or Parquet file, moved into place only when complete."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from imagetagger.bulk.output import ResultWriter, format_for, json_lines
from imagetagger.bulk.stages import RESULT_SCHEMA, result_table

PREDICTIONS = [{"label": "tabby", "confidence": 0.5}, {"label": "tiger_cat", "confidence": 0.25}]
INVALID = ("InvalidImage", "Url is not pointing to a valid image format.")


def _table():
    return result_table(
        ["path", "url"],
        ["/data/cat.jpg", "http://127.0.0.2/x.jpg"],
        [PREDICTIONS, None],
        [("", ""), INVALID],
    )


def test_json_lines_have_the_api_shape() -> None:
    assert [json.loads(line) for line in json_lines(_table()).splitlines()] == [
        {"path": "/data/cat.jpg", "predictions": PREDICTIONS},
        {"url": "http://127.0.0.2/x.jpg", "error": {"type": INVALID[0], "detail": INVALID[1]}},
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_writer_writes_every_batch_into_one_file(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "new" / f"tags.{fmt}"
    with ResultWriter(str(out), fmt) as writer:  # type: ignore[arg-type]
        writer.write(_table())
        writer.write(_table())
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    if fmt == "parquet":
        table = pq.read_table(out)
        assert table.schema == RESULT_SCHEMA
        assert table.to_pylist() == _table().to_pylist() * 2
    else:
        assert out.read_text() == json_lines(_table()) * 2


def test_a_failed_job_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "tags.jsonl"
    with pytest.raises(RuntimeError), ResultWriter(str(out), "jsonl") as writer:
        writer.write(_table())
        raise RuntimeError("pipeline failed")
    assert list(tmp_path.iterdir()) == []


def test_format_follows_the_extension() -> None:
    assert [format_for(p) for p in ("a.parquet", "s3://b/a.PQ", "a.jsonl", "a")] == [
        "parquet",
        "parquet",
        "jsonl",
        "jsonl",
    ]
