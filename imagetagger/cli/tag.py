"""``imagetagger tag``: tag a whole collection with Ray Data, into one JSONL or Parquet file.

The job (:mod:`imagetagger.bulk`) runs on an embedded local Ray sized to this machine,
or on a running cluster with ``--address``. Exit status 0 when the file was written,
whatever the rows say (bad inputs are rows with their error); 1 when nothing could be
tagged (no inputs, a model that cannot load, an output that cannot be written).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt, TypeAdapter

from imagetagger.bulk.defaults import DEFAULT_BATCH_SIZE, DEFAULT_OBJECT_STORE_BUDGET
from imagetagger.cli.args import (
    add_labels_option,
    add_model_options,
    add_selection_options,
    constrained,
    model_options,
    runtime_name,
)
from imagetagger.environment import RUNTIME_ENV, env_runtime
from imagetagger.settings import Cidr, DownloaderSettings

FORMATS = ("jsonl", "parquet")
RAY_ADDRESS_ENV = "RAY_ADDRESS"
_MODEL_LOAD_ERROR = "imagetagger.errors.ModelLoadError"


# The job's sizes, as argparse types with pydantic's bounds (like --top and --minconf).
positive_int = constrained(TypeAdapter(PositiveInt))
non_negative_int = constrained(TypeAdapter(NonNegativeInt))
non_negative_float = constrained(TypeAdapter(NonNegativeFloat))
cidr = constrained(TypeAdapter(Cidr))


def resolve_runtime(cli_runtime: str | None, gpus: float) -> str:
    """``--runtime``, else ``$IMAGETAGGER_RUNTIME``, else tensorflow on GPUs, litert on CPUs."""
    from imagetagger.models.options import DEFAULT_RUNTIME

    chosen = cli_runtime or env_runtime(os.environ)
    if chosen is None:
        return "tensorflow" if gpus else DEFAULT_RUNTIME
    try:
        return runtime_name(chosen)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"${RUNTIME_ENV}: {exc}") from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray for the job: the cluster at ``address`` (or ``$RAY_ADDRESS``, which a Ray Job's
    driver gets), else a new embedded instance sized to this machine, never one that
    happens to run here already. A Ray this process started before is used as it is.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = address or os.environ.get(RAY_ADDRESS_ENV) or None
    if address:
        from imagetagger.bulk.traced import otel_environment

        # OTEL_* (tracing) reach a cluster's workers only this way; a local Ray's workers
        # inherit this process's environment.
        env = otel_environment()
        ray.init(address=address, runtime_env={"env_vars": env} if env else None)
    else:
        ray.init(address="local", num_cpus=_usable_cpus(), include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


def _usable_cpus() -> int:
    """The CPUs this process may run on (a container's share, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run(args: argparse.Namespace) -> int:
    import ray.exceptions

    from imagetagger.bulk.output import format_for
    from imagetagger.bulk.pipeline import PipelineOptions, run_job
    from imagetagger.bulk.sources import collect
    from imagetagger.bulk.stages import TaggerConfig
    from imagetagger.errors import ModelLoadError

    collection = collect(args.sources)
    if not collection.inputs:
        print("imagetagger tag: nothing to tag in the given sources", file=sys.stderr)
        return 1
    runtime = resolve_runtime(args.runtime, args.gpus)
    model = model_options(
        model=args.model,
        runtime=runtime,
        precision=args.precision,
        weights_path=args.weights_path,
        intra_op_threads=1 if runtime == "litert" else 0,
        interpreters=args.interpreters,
    )
    options = PipelineOptions(
        model=TaggerConfig(
            **model.model_dump(), top=args.top, minconf=args.minconf, labels=args.labels
        ),
        settings=DownloaderSettings(allowed_networks=args.allow_network),
        actors=args.actors,
        gpus_per_actor=args.gpus,
        decode_cpus=args.decode_cpus,
        object_store_budget=args.object_store_mib * 2**20 or None,
        batch_size=args.batch_size,
    )
    fmt = args.format or format_for(args.out)
    with ray_session(args.address):
        try:
            summary = run_job(collection.inputs, options, args.out, fmt, skipped=collection.skipped)
        except ModelLoadError as exc:
            print(f"imagetagger tag: cannot load {args.model}: {exc}", file=sys.stderr)
            return 1
        except ray.exceptions.ActorDiedError as exc:  # the model actor's __init__ raised
            print(f"imagetagger tag: cannot load {args.model}: {_cause(exc)}", file=sys.stderr)
            return 1
    print(f"imagetagger tag: {summary.line()} -> {args.out}")
    return 0


def _cause(exc: BaseException) -> str:
    """The model's own error out of Ray's report of a dead actor (its last line naming it)."""
    text = str(exc)
    marker = f"{_MODEL_LOAD_ERROR}: "
    lines = [line for line in text.splitlines() if marker in line]
    return lines[-1].split(marker, 1)[1] if lines else text.splitlines()[0]


def add_parser(commands: Any) -> None:
    """Register ``tag`` on the top-level subparsers."""
    tag = commands.add_parser(
        "tag",
        help="tag a collection (files, directories, globs, manifests, URLs) with Ray Data",
        description="Tag every image in SOURCE... into one JSONL or Parquet file, one row "
        "per input: its path or url, and its predictions or its error. Directories are "
        "walked recursively (hidden files and non-image extensions skipped); .txt and .csv "
        "files are manifests of paths or URLs.",
    )
    tag.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="file, directory, glob, "
        "manifest (.txt, .csv with a path or url column) or http(s) URL",
    )
    tag.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="output file: a local path or a pyarrow URI (s3://, gs://, ...)",
    )
    tag.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="jsonl or parquet (default: parquet for .parquet/.pq, else jsonl)",
    )
    add_model_options(tag, defaults_from_env=True, runtime_from_gpus=True)
    add_selection_options(tag)
    add_labels_option(tag)
    tag.add_argument(
        "--address", default=None, help="Ray cluster to run on (default: an embedded local Ray)"
    )
    tag.add_argument(
        "--allow-network",
        type=cidr,
        action="append",
        default=[],
        metavar="CIDR",
        help="also fetch URLs from this network, e.g. 127.0.0.1/32 (repeatable)",
    )
    tag.add_argument(
        "--actors",
        type=positive_int,
        default=1,
        help="model actors (replicas of the model) (default: 1)",
    )
    tag.add_argument(
        "--gpus", type=non_negative_float, default=0.0, help="GPUs per model actor (default: 0)"
    )
    tag.add_argument(
        "--interpreters",
        type=positive_int,
        default=2,
        help="litert: interpreters per actor, images run at once (default: 2)",
    )
    tag.add_argument(
        "--decode-cpus",
        type=non_negative_float,
        default=1.0,
        help="CPUs per decode task (default: 1)",
    )
    tag.add_argument(
        "--object-store-mib",
        type=non_negative_int,
        default=DEFAULT_OBJECT_STORE_BUDGET // 2**20,
        help="object-store memory the job may fill, MiB; 0: Ray Data's default share "
        f"(default: {DEFAULT_OBJECT_STORE_BUDGET // 2**20})",
    )
    tag.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"images per model call (default: {DEFAULT_BATCH_SIZE})",
    )
    tag.set_defaults(handler=run)
