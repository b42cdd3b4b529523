"""The per-batch steps of the bulk job: read or fetch, decode and crop, classify.

Each step takes and returns a ``pyarrow.Table`` with an explicit schema, so Ray Data
runs them as ``map_batches(..., batch_format="pyarrow")``, and so the tests can call
them on a table without Ray. A row that failed keeps flowing with its ``error_type``
and ``error_detail`` set: the model skips it and the output shows the error, as the
API would have answered it. Nothing here imports Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from imagetagger.errors import ImageTaggerError
from imagetagger.local_files import file_error, read_image_file
from imagetagger.models.options import ModelOptions
from imagetagger.schemas import MinConf, Top
from imagetagger.settings import DownloaderSettings

if TYPE_CHECKING:
    import numpy as np

    from imagetagger.models.options import Classifier

#: What flows between the steps: ``data`` is the file's or body's bytes before the
#: decode step and the model's ``S x S x 3`` uint8 crop after it (empty on error).
STAGE_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # "path" or "url"
        ("source", pa.string()),
        ("data", pa.binary()),
        ("error_type", pa.string()),  # "" when the row is fine so far
        ("error_detail", pa.string()),
    ]
)

PREDICTION_TYPE = pa.struct([("label", pa.string()), ("confidence", pa.float64())])
ERROR_TYPE = pa.struct([("type", pa.string()), ("detail", pa.string())])
#: A general label as the API answers it (``GeneralLabel.to_dict()``), for ``--labels general``.
GENERAL_TYPE = pa.struct(
    [("label", pa.string()), ("id", pa.string()), ("confidence", pa.float64())]
    + [(key, pa.list_(pa.string())) for key in ("parents", "aliases", "categories")]
)

#: One row per input, as written: ``path`` or ``url``, then ``predictions`` or ``error``.
RESULT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("url", pa.string()),
        ("predictions", pa.list_(PREDICTION_TYPE)),
        ("error", ERROR_TYPE),
        ("general", pa.list_(GENERAL_TYPE)),  # null unless --labels general: absent in JSONL
    ]
)


def stage_table(
    kinds: Sequence[str],
    sources: Sequence[str],
    data: Sequence[bytes],
    errors: Sequence[tuple[str, str]],
) -> pa.Table:
    """A table of :data:`STAGE_SCHEMA` from its columns (errors as ``(type, detail)``)."""
    return pa.table(
        {
            "kind": pa.array(kinds, pa.string()),
            "source": pa.array(sources, pa.string()),
            "data": pa.array(data, pa.binary()),
            "error_type": pa.array([e[0] for e in errors], pa.string()),
            "error_detail": pa.array([e[1] for e in errors], pa.string()),
        },
        schema=STAGE_SCHEMA,
    )


_OK = ("", "")


def _error(exc: ImageTaggerError) -> tuple[str, str]:
    return exc.error_type, exc.detail


# --- step 1: bytes --------------------------------------------------------------------


def from_binary_files(table: pa.Table) -> pa.Table:
    """``read_binary_files(include_paths=True)`` output (``path``, ``bytes``) as a stage table."""
    paths = table.column("path").to_pylist()
    return stage_table(
        ["path"] * len(paths), paths, table.column("bytes").to_pylist(), [_OK] * len(paths)
    )


def fetch_batch(table: pa.Table, *, settings: dict[str, Any]) -> pa.Table:
    """Read the files and download the URLs of ``kind``/``source`` rows, errors as rows.

    URLs go through the service's SSRF-guarded :class:`ImageFetcher` under the same
    :class:`DownloaderSettings` (``settings`` is their dict, which pickles simply);
    a batch's downloads run concurrently on one event loop.
    """
    limits = DownloaderSettings.model_validate(settings)
    kinds = table.column("kind").to_pylist()
    sources = table.column("source").to_pylist()
    data: list[bytes] = [b""] * len(kinds)
    errors: list[tuple[str, str]] = [_OK] * len(kinds)
    urls = [i for i, kind in enumerate(kinds) if kind == "url"]
    for i, kind in enumerate(kinds):
        if kind == "path":
            try:
                data[i] = read_image_file(sources[i], limits.max_image_bytes)
            except OSError as exc:
                errors[i] = file_error(exc)
            except ImageTaggerError as exc:
                errors[i] = _error(exc)
    if urls:
        fetched = asyncio.run(_fetch_all([sources[i] for i in urls], limits))
        for i, result in zip(urls, fetched, strict=True):
            if isinstance(result, ImageTaggerError):
                errors[i] = _error(result)
            else:
                data[i] = result
    return stage_table(kinds, sources, data, errors)


async def _fetch_all(
    urls: Sequence[str], settings: DownloaderSettings
) -> list[bytes | ImageTaggerError]:
    from imagetagger.download.fetch import fetcher_from_settings

    fetcher = fetcher_from_settings(settings)

    async def one(url: str) -> bytes | ImageTaggerError:
        try:
            return await fetcher.fetch(url)
        except ImageTaggerError as exc:
            return exc

    try:
        return list(await asyncio.gather(*(one(url) for url in urls)))
    finally:
        await fetcher.close()


# --- step 2: decode and crop ----------------------------------------------------------


def decode_batch(table: pa.Table, *, size: int, crop_padding: int, max_pixels: int) -> pa.Table:
    """Replace each good row's bytes by the model's crop (``imagetagger.images``)."""
    from imagetagger.images import prepare_image

    data = table.column("data").to_pylist()
    errors = list(
        zip(
            table.column("error_type").to_pylist(),
            table.column("error_detail").to_pylist(),
            strict=True,
        )
    )
    crops: list[bytes] = []
    for i, body in enumerate(data):
        crop = b""
        if not errors[i][0]:
            try:
                crop = prepare_image(
                    body, size=size, crop_padding=crop_padding, max_pixels=max_pixels
                ).tobytes()
            except ImageTaggerError as exc:
                errors[i] = _error(exc)
        crops.append(crop)
    return stage_table(
        table.column("kind").to_pylist(), table.column("source").to_pylist(), crops, errors
    )


# --- step 3: classify -----------------------------------------------------------------


class TaggerConfig(ModelOptions):
    """What a model actor loads (the library's model options, validated as the Serve
    app's ``args`` are) and how it answers (the API's ``top``/``minconf``)."""

    top: Top | None = None
    minconf: MinConf | None = None
    labels: Literal["fine", "general"] = "fine"
    cache_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values, which Ray pickles simply into each actor's constructor."""
        return self.model_dump()


class Tagger:
    """The model over batches: loaded once per actor, then crops in, result rows out."""

    def __init__(self, config: dict[str, Any], classifier: Classifier | None = None) -> None:
        self.config = TaggerConfig.model_validate(config)
        self.classifier = classifier or _load(self.config)

    def __call__(self, table: pa.Table) -> pa.Table:
        import numpy as np

        from imagetagger.hierarchy import general_labels
        from imagetagger.predictions import select_predictions

        size = self.classifier.spec.input_size
        crops = table.column("data").to_pylist()
        error_types = table.column("error_type").to_pylist()
        good = [i for i, error_type in enumerate(error_types) if not error_type]
        predictions: list[list[dict[str, Any]] | None] = [None] * len(crops)
        general: list[list[dict[str, Any]] | None] = [None] * len(crops)
        if good:
            batch = np.stack([_crop_array(crops[i], size) for i in good])
            probabilities = self.classifier.predict_proba(batch)
            for i, probs in zip(good, probabilities, strict=True):
                predictions[i] = select_predictions(
                    probs, top=self.config.top, minconf=self.config.minconf
                )
                if self.config.labels == "general":  # the same labels as the API's
                    chosen = general_labels(probs, top=self.config.top, minconf=self.config.minconf)
                    general[i] = [label.to_dict() for label in chosen]
        return result_table(
            table.column("kind").to_pylist(),
            table.column("source").to_pylist(),
            predictions,
            list(zip(error_types, table.column("error_detail").to_pylist(), strict=True)),
            general,
        )


def _load(config: TaggerConfig) -> Classifier:
    from pathlib import Path

    from imagetagger.models.runtimes import load_model

    cache_dir = Path(config.cache_dir) if config.cache_dir else None
    return load_model(
        config.model,
        config.runtime_options(),
        weights_path=config.weights_path,
        cache_dir=cache_dir,
    )


def _crop_array(crop: bytes, size: int) -> np.ndarray:
    import numpy as np

    return np.frombuffer(crop, dtype=np.uint8).reshape(size, size, 3)


def result_table(
    kinds: Sequence[str],
    sources: Sequence[str],
    predictions: Sequence[list[dict[str, Any]] | None],
    errors: Sequence[tuple[str, str]],
    general: Sequence[list[dict[str, Any]] | None] | None = None,
) -> pa.Table:
    """Rows of :data:`RESULT_SCHEMA`: a row has predictions, or an error, never both;
    ``general`` labels beside the predictions when they were asked for."""
    return pa.table(
        {
            "path": _where(kinds, sources, "path"),
            "url": _where(kinds, sources, "url"),
            "predictions": pa.array(predictions, pa.list_(PREDICTION_TYPE)),
            "error": pa.array(
                [{"type": t, "detail": d} if t else None for t, d in errors], ERROR_TYPE
            ),
            "general": pa.array(general or [None] * len(kinds), pa.list_(GENERAL_TYPE)),
        },
        schema=RESULT_SCHEMA,
    )


def _where(kinds: Sequence[str], sources: Sequence[str], kind: str) -> pa.Array:
    return pa.array(
        [s if k == kind else None for k, s in zip(kinds, sources, strict=True)], pa.string()
    )
