"""Sources to inputs: directories, globs, manifests, URLs; what is skipped, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagetagger.bulk.sources import Input, collect, image_extensions


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_image_extensions_are_the_decoders_formats() -> None:
    extensions = image_extensions()
    assert {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"} <= extensions
    assert not {".txt", ".csv", ".pdf", ".eps", ".psd", ".svg"} & extensions


def test_directory_walk_skips_hidden_and_non_images(tmp_path: Path) -> None:
    a = _touch(tmp_path / "a.jpg")
    b = _touch(tmp_path / "sub" / "deeper" / "b.PNG")
    _touch(tmp_path / "README.txt")
    _touch(tmp_path / ".hidden.jpg")
    _touch(tmp_path / ".git" / "x.jpg")  # not entered: counted once
    _touch(tmp_path / "sub" / "data.csv")  # inside a directory a CSV is not a manifest
    collection = collect([str(tmp_path)])
    assert collection.inputs == [Input("path", str(a)), Input("path", str(b))]
    assert collection.skipped == {"hidden": 2, "not an image": 2}


def test_explicit_file_is_always_tagged_and_missing_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _touch(tmp_path / "notes.bin")
    collection = collect(["notes.bin", "missing.jpg"])
    assert collection.inputs == [
        Input("path", str(tmp_path / "notes.bin")),
        Input("path", str(tmp_path / "missing.jpg")),
    ]
    assert not collection.skipped


def test_glob_matches_are_filtered_and_an_empty_glob_is_an_error(tmp_path: Path) -> None:
    a = _touch(tmp_path / "x" / "a.jpg")
    _touch(tmp_path / "x" / "a.txt")
    b = _touch(tmp_path / "y" / "b.gif")
    collection = collect([str(tmp_path / "*" / "*")])
    assert collection.inputs == [Input("path", str(a)), Input("path", str(b))]
    assert collection.skipped == {"not an image": 1}
    with pytest.raises(ValueError, match=r"no file matches this pattern"):
        collect([str(tmp_path / "*.nope")])


def test_txt_manifest_lines_paths_relative_to_it(tmp_path: Path) -> None:
    manifest = tmp_path / "lists" / "batch.txt"
    _touch(
        manifest,
        b"# photos\nhttp://127.0.0.1:9/a.jpg\n\n  ../img/b.jpg  \n/abs/c.png\nftp://x/y\n",
    )
    assert collect([str(manifest)]).inputs == [
        Input("url", "http://127.0.0.1:9/a.jpg"),
        Input("path", str(tmp_path / "img" / "b.jpg")),
        Input("path", "/abs/c.png"),
        Input("url", "ftp://x/y"),  # fetched, and refused: an UnreachableURL row
    ]


def test_csv_manifest_url_and_path_columns(tmp_path: Path) -> None:
    manifest = _touch(
        tmp_path / "m.csv",
        b"\xef\xbb\xbfid,URL,path\n1,http://127.0.0.2/a.jpg,\n2,,b.jpg\n3,,\n"
        b"4,http://127.0.0.2/c.jpg,ignored.jpg\n",
    )
    collection = collect([str(manifest)])
    assert collection.inputs == [
        Input("url", "http://127.0.0.2/a.jpg"),
        Input("path", str(tmp_path / "b.jpg")),
        Input("url", "http://127.0.0.2/c.jpg"),
    ]


def test_csv_manifest_without_path_or_url_column_is_an_error(tmp_path: Path) -> None:
    manifest = _touch(tmp_path / "m.csv", b"name,size\na,1\n")
    with pytest.raises(ValueError, match=r"m\.csv: a CSV manifest needs a 'path' or 'url' column"):
        collect([str(manifest)])


def test_duplicates_are_tagged_once_and_counted(tmp_path: Path) -> None:
    a = _touch(tmp_path / "a.jpg")
    collection = collect([str(tmp_path), str(a), "http://127.0.0.2/x", "http://127.0.0.2/x"])
    assert collection.inputs == [Input("path", str(a)), Input("url", "http://127.0.0.2/x")]
    assert collection.skipped == {"duplicate": 2}
