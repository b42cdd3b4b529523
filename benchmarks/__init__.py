"""Benchmark scripts: they measure and print figures; they are not tests (see README.md)."""
