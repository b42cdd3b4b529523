"""The bulk job's spans, when the standard ``OTEL_*`` variables ask for them.

One trace per job: ``imagetagger tag`` (the driver, over the whole job) and, as its
children, one span per batch of each step in the Ray Data workers: ``tag.read`` (files
Ray Data's reader read), ``tag.fetch`` (files and URLs through the SSRF guard),
``tag.decode`` (decode and crop) and ``tag.classify`` (the model actor), each with
``imagetagger.batch.rows`` and ``imagetagger.batch.errors`` (rows that carry an error
after the step). The job's W3C context travels to the workers as a plain argument;
each worker configures tracing from its own environment (the CLI passes the ``OTEL_*``
variables in the job's ``runtime_env``, so they reach a cluster's workers too) and
exports a batch's spans when the batch ends, as Ray may end a worker right after.
Off, the steps run unwrapped. No Ray here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from imagetagger import tracing
from imagetagger.bulk.stages import Tagger

COMPONENT = "bulk"


def otel_environment() -> dict[str, str]:
    """The ``OTEL_*`` variables of this process (for the job's ``runtime_env``)."""
    return {key: value for key, value in os.environ.items() if key.startswith("OTEL_")}


def batch_errors(table: pa.Table) -> int:
    """Rows of a stage table (``error_type``) or a result table (``error``) that failed."""
    if "error_type" in table.column_names:
        return sum(1 for error_type in table.column("error_type").to_pylist() if error_type)
    return table.num_rows - table.column("error").null_count


def _batch_span(name: str, parent: tracing.Carrier | None, table: pa.Table) -> Any:
    tracing.configure(COMPONENT)
    return tracing.span(f"tag.{name}", parent, {"imagetagger.batch.rows": table.num_rows})


def _record(span: Any, out: pa.Table) -> None:
    if span is not None:
        span.set_attribute("imagetagger.batch.errors", batch_errors(out))


class TracedStep:
    """A batch function of :mod:`imagetagger.bulk.stages` with one span per batch
    (an instance, so Ray Data runs it as a task, as it runs the plain function)."""

    def __init__(
        self, step: Callable[..., pa.Table], name: str, parent: tracing.Carrier | None
    ) -> None:
        self.step, self.name, self.parent = step, name, parent

    def __call__(self, table: pa.Table, **kwargs: Any) -> pa.Table:
        with _batch_span(self.name, self.parent, table) as span:
            out = self.step(table, **kwargs)
            _record(span, out)
        tracing.flush()
        return out


class TracedTagger(Tagger):
    """:class:`Tagger` with a ``tag.classify`` span per batch (the model actor)."""

    def __init__(
        self, config: dict[str, Any], parent: tracing.Carrier | None = None, classifier: Any = None
    ) -> None:
        super().__init__(config, classifier)
        self.parent = parent

    def __call__(self, table: pa.Table) -> pa.Table:
        with _batch_span("classify", self.parent, table) as span:
            out = super().__call__(table)
            _record(span, out)
        tracing.flush()
        return out
