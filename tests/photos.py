"""The photos the tests share, and what the model must call them (one home for both)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CHELSEA_PATH = DATA / "chelsea.jpg"  # a tabby cat (scikit-image's sample photo)
COFFEE_PATH = DATA / "coffee.jpg"  # a cup of espresso
CHELSEA = CHELSEA_PATH.read_bytes()
COFFEE = COFFEE_PATH.read_bytes()
#: Labels any of which is a right top-1 answer for chelsea.jpg.
CATS = frozenset({"tabby", "tiger_cat", "Egyptian_cat"})
