"""The Ray Data plan of the bulk job, and the loop that drains it into the output file.

::

    read_binary_files(local files, include_paths=True) ─┐
    from_items(URLs, odd paths) → fetch_batch ─────────┴─ union → decode_batch (CPU tasks)
        → Tagger (actor pool; GPUs when asked) → iter_batches → ResultWriter + summary

Local files that exist and fit the byte limit are read by Ray Data's own reader (in
parallel, from any filesystem it knows). Everything else (URLs, and paths that are
missing, not regular files or over the limit) goes through ``fetch_batch``, which
turns each failure into that input's error row. This is the only module of
:mod:`imagetagger` that imports Ray, and only inside the functions that need it.
"""

from __future__ import annotations

import math
import os
import stat
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imagetagger import tracing
from imagetagger.bulk.defaults import DEFAULT_BATCH_SIZE, DEFAULT_OBJECT_STORE_BUDGET
from imagetagger.bulk.output import OutputFormat, ResultWriter
from imagetagger.bulk.sources import Input
from imagetagger.bulk.stages import (
    Tagger,
    TaggerConfig,
    decode_batch,
    fetch_batch,
    from_binary_files,
)
from imagetagger.bulk.traced import COMPONENT, TracedStep, TracedTagger
from imagetagger.settings import DownloaderSettings

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

#: URLs one fetch task downloads concurrently.
FETCH_BATCH_SIZE = 16
#: Files per read task. Ray Data's default splits any collection into ~200 read tasks,
#: so their blocks (and the memory in flight) grew with the collection; a fixed number
#: of files per block keeps the job's memory independent of its size.
FILES_PER_READ_BLOCK = 16


@dataclass(frozen=True)
class PipelineOptions:
    """How the job runs: model actors and their resources, batch size, download limits."""

    model: TaggerConfig
    settings: DownloaderSettings = field(default_factory=DownloaderSettings)
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    decode_cpus: float = 1.0
    batch_size: int = DEFAULT_BATCH_SIZE
    object_store_budget: int | None = DEFAULT_OBJECT_STORE_BUDGET  # bytes; None: Ray's

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_size < 1:
            raise ValueError("actors and batch_size must be at least 1")
        if min(self.cpus_per_actor, self.gpus_per_actor, self.decode_cpus) < 0:
            raise ValueError("cpus_per_actor, gpus_per_actor and decode_cpus must be >= 0")
        if self.gpus_per_actor and self.model.runtime != "tensorflow":
            raise ValueError("GPUs need the tensorflow runtime (litert runs on CPUs)")


@dataclass
class Summary:
    """What the job did: rows written, errors by type, skipped sources, wall time."""

    rows: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def images(self) -> int:
        return self.rows - sum(self.errors.values())

    def count(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        for error in table.column("error").to_pylist():
            if error is not None:
                self.errors[error["type"]] += 1

    def line(self) -> str:
        """``203 rows: 200 images, 3 errors (InvalidImage 3), 1 skipped (...); 9.1 s, 22 img/s``."""
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.rows} rows: {self.images} images, "
            f"{_counted(self.errors, 'error')}, {_counted(self.skipped, 'skipped')}; "
            f"{self.seconds:.1f} s, {rate:.1f} images/s"
        )


def _counted(counter: Counter[str], noun: str) -> str:
    total = sum(counter.values())
    label = noun if noun == "skipped" or total == 1 else f"{noun}s"
    if not total:
        return f"0 {label}"
    parts = ", ".join(f"{key} {value}" for key, value in sorted(counter.items()))
    return f"{total} {label} ({parts})"


def split_inputs(inputs: Sequence[Input], max_bytes: int) -> tuple[list[str], list[Input]]:
    """(files Ray Data's reader can take whole, inputs that need ``fetch_batch``)."""
    files: list[str] = []
    others: list[Input] = []
    for item in inputs:
        if item.kind == "path" and _readable_file(item.source, max_bytes):
            files.append(item.source)
        else:
            others.append(item)
    return files, others


def _readable_file(path: str, max_bytes: int) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size <= max_bytes and os.access(path, os.R_OK)


def build_dataset(
    inputs: Sequence[Input], options: PipelineOptions, trace: tracing.Carrier | None = None
) -> ray.data.Dataset:
    """The lazy dataset of result rows (nothing runs until it is iterated); with the
    job's ``trace`` context, every step's batches are spans in it (bulk/traced.py)."""
    import ray.data
    from ray.data import ExecutionResources

    from imagetagger.models.specs import get_spec

    settings = options.settings
    read, fetch, decode = from_binary_files, fetch_batch, decode_batch
    tagger: type[Tagger] = Tagger
    tagger_kwargs = {"config": options.model.to_dict()}
    if trace is not None:
        read = TracedStep(from_binary_files, "read", trace)
        fetch = TracedStep(fetch_batch, "fetch", trace)
        decode = TracedStep(decode_batch, "decode", trace)
        tagger, tagger_kwargs = TracedTagger, {**tagger_kwargs, "parent": trace}
    files, others = split_inputs(inputs, settings.max_image_bytes)
    parts: list[ray.data.Dataset] = []
    if files:
        parts.append(
            ray.data.read_binary_files(
                files,
                include_paths=True,
                override_num_blocks=math.ceil(len(files) / FILES_PER_READ_BLOCK),
            ).map_batches(read, batch_format="pyarrow")
        )
    if others:
        items = [{"kind": item.kind, "source": item.source} for item in others]
        parts.append(
            ray.data.from_items(items).map_batches(
                fetch,
                batch_format="pyarrow",
                batch_size=FETCH_BATCH_SIZE,
                fn_kwargs={"settings": settings.model_dump()},
            )
        )
    if not parts:
        raise ValueError("nothing to tag")
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    spec = get_spec(options.model.model)
    dataset = dataset.map_batches(
        decode,
        batch_format="pyarrow",
        batch_size=options.batch_size,
        num_cpus=options.decode_cpus,
        fn_kwargs={
            "size": spec.input_size,
            "crop_padding": spec.crop_padding,
            "max_pixels": settings.max_image_pixels,
        },
    ).map_batches(
        tagger,
        batch_format="pyarrow",
        batch_size=options.batch_size,
        fn_constructor_kwargs=tagger_kwargs,
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor or None,
    )
    if options.object_store_budget:
        dataset.context.execution_options.resource_limits = ExecutionResources.for_limits(
            object_store_memory=options.object_store_budget
        )
    return dataset


def iter_results(
    inputs: Sequence[Input], options: PipelineOptions, trace: tracing.Carrier | None = None
) -> Iterator[pa.Table]:
    """Result tables as the pipeline produces them (completion order, not input order)."""
    dataset = build_dataset(inputs, options, trace)
    yield from dataset.iter_batches(batch_format="pyarrow", batch_size=None)


def run_job(
    inputs: Sequence[Input],
    options: PipelineOptions,
    out: str,
    fmt: OutputFormat,
    *,
    skipped: Counter[str] | None = None,
) -> Summary:
    """Tag ``inputs`` into the file ``out``; Ray must already be initialized."""
    summary = Summary(skipped=Counter(skipped or {}))
    started = time.perf_counter()
    tracing.configure(COMPONENT)  # on when OTEL_EXPORTER_OTLP_*ENDPOINT is set
    with (
        tracing.span("imagetagger tag", attributes={"imagetagger.inputs": len(inputs)}) as job,
        ResultWriter(out, fmt) as writer,
    ):
        for table in iter_results(inputs, options, tracing.carrier()):
            writer.write(table)
            summary.count(table)
        if job is not None:
            errors = sum(summary.errors.values())
            job.set_attributes({"imagetagger.rows": summary.rows, "imagetagger.errors": errors})
    tracing.flush()
    summary.seconds = time.perf_counter() - started
    return summary
