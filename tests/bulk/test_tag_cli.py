"""``imagetagger tag`` arguments and the failures it reports before starting Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagetagger import cli
from imagetagger.cli.tag import resolve_runtime


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tag", "photos"], "the following arguments are required: --out"),
        (["tag", "--out", "t.jsonl"], "the following arguments are required: SOURCE"),
        (["tag", "p", "--out", "t", "--format", "csv"], "invalid choice: 'csv'"),
        (["tag", "p", "--out", "t", "--actors", "0"], "greater than 0, got '0'"),
        (
            ["tag", "p", "--out", "t", "--batch-size", "x"],
            "valid integer, unable to parse string as an integer, got 'x'",
        ),
        (["tag", "p", "--out", "t", "--gpus", "-1"], "greater than or equal to 0, got '-1'"),
        (["tag", "p", "--out", "t", "--top", "0"], "greater than or equal to 1"),
        (["tag", "p", "--out", "t", "--minconf", "2"], "less than or equal to 1"),
        (["tag", "p", "--out", "t", "--model", "resnet50"], "unknown model 'resnet50'"),
        (["tag", "p", "--out", "t", "--runtime", "onnx"], "unknown runtime 'onnx'"),
        (["tag", "p", "--out", "t", "--precision", "int4"], "invalid choice: 'int4'"),
        (
            ["tag", "p", "--out", "t", "--allow-network", "10.1/x"],
            "'10.1/x' does not appear to be an IPv4 or IPv6 network",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults() -> None:
    args = cli.build_parser().parse_args(["tag", "a", "b.txt", "--out", "t.parquet"])
    assert (args.sources, args.out, args.format, args.top, args.minconf) == (
        ["a", "b.txt"],
        "t.parquet",
        None,
        None,
        None,
    )
    assert (args.address, args.allow_network, args.actors, args.gpus) == (None, [], 1, 0.0)


def test_runtime_is_litert_on_cpus_and_tensorflow_on_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMAGETAGGER_RUNTIME", raising=False)
    assert [resolve_runtime(None, 0), resolve_runtime(None, 1), resolve_runtime("litert", 0)] == [
        "litert",
        "tensorflow",
        "litert",
    ]
    monkeypatch.setenv("IMAGETAGGER_RUNTIME", "tensorflow")
    assert resolve_runtime(None, 0) == "tensorflow"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--runtime", "litert", "--gpus", "1"], "GPUs need the tensorflow runtime"),
        (["--precision", "int8", "--gpus", "1"], "precision applies to the litert runtime only"),
    ],
)
def test_bad_combinations_exit_1_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    out = tmp_path / "t.jsonl"
    assert cli.main(["tag", str(tmp_path), "--out", str(out), *extra]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_nothing_to_tag_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "README.txt").write_text("no photos here\n")
    assert cli.main(["tag", str(tmp_path), "--out", str(tmp_path / "t.jsonl")]) == 1
    assert "nothing to tag in the given sources" in capsys.readouterr().err


def test_glob_without_match_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tag", str(tmp_path / "*.jpg"), "--out", str(tmp_path / "t.jsonl")]) == 1
    assert "no file matches this pattern" in capsys.readouterr().err
