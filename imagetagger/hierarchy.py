"""General labels ("cat", "dog", "car") from the 1000 fine ImageNet-1K probabilities.

The hierarchy is WordNet 3.0's, cut to the *display vocabulary* (the nodes a photo
tagging API shows: every class, and the everyday groups above them; no "chordate" or
"device") and shipped in ``data/label_hierarchy.json`` (built by
``scripts/build_label_hierarchy.py``; WordNet is not needed at run time). A node's
confidence is the sum of the softmax probabilities of the distinct classes under it:
the probability that the photo shows some kind of that node. A class under a node by
two WordNet paths counts once, so no confidence passes 1; a WordNet node that is not
shown still passes its classes up, since membership comes from the classes' paths.

Labels are answered as Cloud Vision and Rekognition answer theirs: the confident
specific labels first, then their groups, nearest first, the broadest last. Summed
confidences rank every group above its members, so ordering by confidence alone would
bury "bald eagle" under "animal" and "bird" (see Deng et al., "Hedging Your Bets",
CVPR 2012, on this same hierarchy). By default a photo gets at least ``MIN_LABELS``
labels, each with its true confidence, even below the default floor.

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
DEFAULT_TOP = 10  # labels answered when neither top nor minconf is given
DEFAULT_MINCONF = 0.5  # the floor when minconf is not given: "more likely than not"
MIN_LABELS = 3  # under the default floor, a photo still gets its best 3 labels


@dataclass(frozen=True)
class GeneralLabel:
    """One node of the hierarchy with its confidence for one image."""

    name: str  # readable and unique: "domestic cat", "crane (wading bird)"
    id: str  # the WordNet 3.0 synset, e.g. "n02121808": stable, our label's key
    confidence: float  # sum of the probabilities of the classes under it, 0-1
    parents: tuple[str, ...]  # every shown ancestor's name, nearest first
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
        self._bits = np.log2(NUM_CLASSES / sizes)  # what naming the node tells: 0 to ~10 bits
        depth = _depths(nodes)
        # Ties (a node and its only child) put the more specific node first.
        self._depth = np.array([depth[node] for node in self.ids])
        self._names = tuple(nodes[n]["name"] for n in self.ids)
        self._aliases = tuple(tuple(nodes[n]["aliases"]) for n in self.ids)
        self._categories = tuple(tuple(nodes[n]["categories"]) for n in self.ids)
        lineage = [[position[a] for a in _ancestors(nodes, n)] for n in self.ids]
        self._parents = tuple(tuple(self._names[a] for a in up) for up in lineage)
        self._lineage = tuple(frozenset(up) for up in lineage)

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
        """Node positions to answer, in answer order: ``top`` and ``minconf`` as sent.

        ``minconf`` absent: the floor is ``DEFAULT_MINCONF`` and at least ``MIN_LABELS``
        labels (or ``top``, if fewer) are answered, the best under the floor filling in.
        ``minconf`` sent: only labels at or over it, as many as there are. ``top`` caps
        the answer (``DEFAULT_TOP`` when neither is sent), keeping its first labels.
        """
        if top is not None and top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        cap = DEFAULT_TOP if top is None and minconf is None else top
        floor = DEFAULT_MINCONF if minconf is None else minconf
        at_least = 0 if minconf is not None else min(MIN_LABELS, cap or MIN_LABELS)
        return self.pick(scores, cap=cap, floor=floor, at_least=at_least)

    def pick(
        self, scores: np.ndarray, *, cap: int | None, floor: float, at_least: int
    ) -> np.ndarray:
        """The labels over ``floor`` (at least the best ``at_least``), ordered, first ``cap``.

        The order: the most specific chosen labels (those with no chosen label under
        them: a fine class, or the group where the model hedges between classes), best
        first; then the groups above them, deepest first, so "bald eagle, bird of prey,
        bird, animal". Equal confidences put the deeper node first, then the hierarchy's
        order, so answers are deterministic.
        """
        positions = np.arange(len(self.ids))
        best = np.lexsort((positions, -self._depth, -scores))
        chosen = best[scores[best] >= floor]
        if chosen.shape[0] < at_least:
            # Under the floor, hedge as Deng et al.: weigh each node's confidence by the
            # information it gives (bits over "one of the 1000"), so a broad node summing
            # the model's noise ("animal" 0.2 on a rocket) does not outrank a likely class.
            gain = scores * (self._bits + 1.0)
            rest = np.lexsort((positions, -self._depth, -gain))
            extra = [int(i) for i in rest if scores[i] < floor][: at_least - chosen.shape[0]]
            chosen = np.concatenate((chosen, np.array(extra, dtype=np.intp)))
        members = {int(i) for i in chosen}
        inner: set[int] = set()
        for i in members:
            inner.update(self._lineage[i] & members)
        specific = [int(i) for i in chosen if int(i) not in inner]
        groups = sorted(inner, key=lambda i: (-self._depth[i], -scores[i], i))
        ordered = np.array(specific + groups, dtype=np.intp)
        return ordered if cap is None else ordered[:cap]

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
        """The general labels of one image, in answer order (see :meth:`select`)."""
        scores = self.scores(probabilities)
        chosen = self.select(scores, top=top, minconf=minconf)
        return [self.label(int(i), scores[i]) for i in chosen]


def _depths(nodes: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Each node's longest chain of parents up to a top node (1 for a top node).

    A node is always deeper than every node above it, so "deepest first" is
    "nearest first" along any path.
    """
    depth: dict[str, int] = {}

    def of(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((of(p) for p in nodes[node]["parents"]), default=0)
        return depth[node]

    for node in nodes:
        of(node)
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
    """The general labels of one image's 1000 class probabilities, in answer order.

    ``top`` and ``minconf`` exactly as the client sent them (None when absent): the
    defaults (``DEFAULT_TOP``, ``DEFAULT_MINCONF``, ``MIN_LABELS``) live here, so every
    route, the CLI and the bulk job answer the same labels.
    """
    return hierarchy().general_labels(probabilities, top=top, minconf=minconf)
