"""Bulk tagging: a whole collection through the service's decode, limits and model.

``sources`` turns command-line sources into inputs, ``stages`` holds the per-batch
steps (plain functions on Arrow tables), ``pipeline`` wires them into a Ray Data job
and ``output`` writes the rows. Only ``pipeline`` imports Ray, lazily, so the rest of
the library stays usable (and testable) without a cluster.
"""
