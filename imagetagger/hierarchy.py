"""General labels ("cat", "dog", "car") from the 1000 fine ImageNet-1K probabilities.

The hierarchy is WordNet 3.0's, shipped in ``data/label_hierarchy.json`` (built by
``scripts/build_label_hierarchy.py``; WordNet is not needed at run time). A node's
confidence is the sum of the softmax probabilities of the distinct classes under it:
the probability that the photo shows some kind of that node. A class under a node by
two WordNet paths counts once, so no confidence passes 1.

The node x class membership is kept as a CSR-style index (each node's classes, one
flat array), so one image's confidences are one gather and one ``np.add.reduceat``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from imagetagger.labels import NUM_CLASSES, WNIDS

HIERARCHY_FILE = "label_hierarchy.json"


@dataclass(frozen=True)
class GeneralLabel:
    """One node of the hierarchy with its confidence for one image."""

    name: str  # readable and unique: "domestic cat", "crane (wading bird)"
    id: str  # the WordNet 3.0 synset, e.g. "n02121808": stable, our label's key
    confidence: float  # sum of the probabilities of the classes under it, 0-1
    parents: tuple[str, ...]  # every ancestor's name, nearest first
    aliases: tuple[str, ...]  # WordNet synonyms
    categories: tuple[str, ...]  # top-level groups, e.g. ("Animals and Pets",)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.name,
            "id": self.id,
            "confidence": self.confidence,
            "parents": list(self.parents),
            "aliases": list(self.aliases),
            "categories": list(self.categories),
        }


class Hierarchy:
    """The shipped hierarchy, indexed for fast per-image aggregation."""

    def __init__(self, data: dict[str, Any]) -> None:
        nodes: dict[str, dict[str, Any]] = data["nodes"]
        classes: list[list[list[str]]] = data["classes"]
        if len(classes) != NUM_CLASSES:
            raise ValueError(f"{HIERARCHY_FILE} must describe {NUM_CLASSES} classes")
        self.ids: tuple[str, ...] = tuple(nodes)
        self.excluded: dict[str, str] = dict(data["excluded"])
        self.categories: tuple[str, ...] = tuple(data["categories"])
        position = {node: i for i, node in enumerate(self.ids)}
        members: list[set[int]] = [set() for _ in self.ids]
        for index, paths in enumerate(classes):
            if paths[0][-1] != WNIDS[index]:
                raise ValueError(f"{HIERARCHY_FILE}: class {index} is not {WNIDS[index]}")
            for node in {n for path in paths for n in path}:
                members[position[node]].add(index)
        if not all(members):
            raise ValueError(f"{HIERARCHY_FILE} has a node with no class under it")
        sizes = np.array([len(m) for m in members])
        #: CSR index: node i's classes are class_index[starts[i]:starts[i] + sizes[i]].
        self.class_index = np.concatenate([np.array(sorted(m), dtype=np.intp) for m in members])
        self.starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
        self.class_counts = sizes
        depth = _depths(classes)
        # Ties (a node and its only child) put the more specific node first.
        self._depth = np.array([depth[node] for node in self.ids])
        self._names = tuple(nodes[n]["name"] for n in self.ids)
        self._aliases = tuple(tuple(nodes[n]["aliases"]) for n in self.ids)
        self._categories = tuple(tuple(nodes[n]["categories"]) for n in self.ids)
        self._parents = tuple(
            tuple(self._names[position[a]] for a in _ancestors(nodes, n)) for n in self.ids
        )

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """Each node's confidence (float64, ``len(self)``) for one image's 1000 probabilities."""
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape != (NUM_CLASSES,):
            raise ValueError(f"expected {NUM_CLASSES} probabilities, got shape {probs.shape}")
        if not np.isfinite(probs).all():
            raise ValueError("probabilities must be finite")
        return np.add.reduceat(probs[self.class_index], self.starts)

    def select(
        self, scores: np.ndarray, *, top: int | None = None, minconf: float | None = None
    ) -> np.ndarray:
        """Node positions, best first: ``top`` and ``minconf`` as for /predictions.

        Neither given: the single best node. Equal confidences put the deeper (more
        specific) node first, then the hierarchy's order, so answers are deterministic.
        Both given and more nodes over ``minconf`` than ``top``: the ``top`` most specific
        of them (the deepest; equal depths by confidence), best first.
        """
        if top is not None and top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        if top is None and minconf is None:
            top = 1
        if minconf is None:
            candidates = np.arange(len(self.ids))
        else:
            candidates = np.flatnonzero(scores >= minconf)
        order = np.lexsort((candidates, -self._depth[candidates], -scores[candidates]))
        chosen = candidates[order]
        if top is None or chosen.shape[0] <= top:
            return chosen
        if minconf is None:
            return chosen[:top]
        # A cap under a floor keeps the most specific labels over the floor: every node's
        # ancestors score at least as high as it does, so "the best N by confidence" would
        # always be the broadest ("animal", "vertebrate", "chordate"); the ones kept name
        # those in their parents. They are still answered best first.
        deepest = np.lexsort((np.arange(chosen.shape[0]), -self._depth[chosen]))[:top]
        return chosen[np.sort(deepest)]

    def label(self, position: int, confidence: float) -> GeneralLabel:
        return GeneralLabel(
            name=self._names[position],
            id=self.ids[position],
            confidence=float(confidence),
            parents=self._parents[position],
            aliases=self._aliases[position],
            categories=self._categories[position],
        )

    def general_labels(
        self, probabilities: np.ndarray, *, top: int | None = None, minconf: float | None = None
    ) -> list[GeneralLabel]:
        """The general labels of one image, best first (see :meth:`select`)."""
        scores = self.scores(probabilities)
        chosen = self.select(scores, top=top, minconf=minconf)
        return [self.label(int(i), scores[i]) for i in chosen]


def _depths(classes: list[list[list[str]]]) -> dict[str, int]:
    """Each node's greatest depth on any class path (1 for a top node)."""
    depth: dict[str, int] = {}
    for paths in classes:
        for path in paths:
            for i, node in enumerate(path, start=1):
                depth[node] = max(depth.get(node, 0), i)
    return depth


def _ancestors(nodes: dict[str, dict[str, Any]], node: str) -> list[str]:
    """Every ancestor of ``node``, breadth first from its parents: nearest first."""
    found: list[str] = []
    frontier = list(nodes[node]["parents"])
    while frontier:
        following: list[str] = []
        for parent in frontier:
            if parent not in found:
                found.append(parent)
                following.extend(nodes[parent]["parents"])
        frontier = following
    return found


def load_hierarchy_data() -> dict[str, Any]:
    """The shipped data file, parsed (the build script's output)."""
    text = resources.files("imagetagger").joinpath("data", HIERARCHY_FILE).read_text("utf-8")
    return json.loads(text)


@cache
def hierarchy() -> Hierarchy:
    """The shipped hierarchy, loaded and indexed once per process (about 50 ms)."""
    return Hierarchy(load_hierarchy_data())


def general_labels(
    probabilities: np.ndarray, top: int | None = None, minconf: float | None = None
) -> list[GeneralLabel]:
    """The general labels of one image's 1000 class probabilities, best first."""
    return hierarchy().general_labels(probabilities, top=top, minconf=minconf)
