"""Build imagetagger/data/label_hierarchy.json from WordNet 3.0, at development time.

The 1000 ImageNet-1K classes are WordNet 3.0 noun synsets (``n02124075`` is offset
02124075 of ``data.noun``). This reads Debian's ``wordnet-base`` files directly (no
WordNet library; the service never reads WordNet) and writes, for every class, its
hypernym path(s) to the root and, for every node on them, a readable name, its synonyms,
its direct parents and its top-level categories. It also copies WordNet's license notice
(the header of ``data.noun``) next to the data, as the license asks.

    apt-get install wordnet-base
    python scripts/build_label_hierarchy.py            # rewrite the two files
    python scripts/build_label_hierarchy.py --check    # exit 1 if they are out of date

The choices (abstract nodes left out, names, categories) are the constants below;
docs/API.md explains them to clients.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "imagetagger" / "data"
CLASS_INDEX = DATA / "imagenet_class_index.json"
OUTPUT = DATA / "label_hierarchy.json"
LICENSE_OUTPUT = DATA / "WORDNET_LICENSE"
WORDNET_DIR = Path("/usr/share/wordnet")

#: Nodes too abstract to be a useful tag, left out of every path (their children keep
#: their place). Three kinds, each a reason:
EXCLUDED: dict[str, str] = {
    # The roots of WordNet's noun tree: true of (nearly) every photo, so they say nothing.
    "n00001740": "entity",
    "n00001930": "physical entity",
    "n00002137": "abstraction",
    "n00002684": "object",
    "n00003553": "whole",
    # Each covers a third or more of the classes and has narrower children that carry the
    # meaning ("animal", "plant", "device", "container", "vehicle"); nobody searches for them.
    "n00004258": "living thing",
    "n00004475": "organism",
    "n00021939": "artifact",
    "n03575240": "instrumentality",
    # WordNet's ontological categories above concrete nodes ("food", "person", "sign",
    # "paper"): "matter", "substance", "solid" on a photo of a pizza are noise.
    "n00020827": "matter",
    "n00020090": "substance",
    "n00019613": "substance",
    "n15046900": "solid",
    "n03892891": "part",
    "n13809207": "part",
    "n00007347": "causal agent",
    "n00031921": "relation",
    "n00024264": "attribute",
    "n00033020": "communication",
}

#: Rekognition-style top-level groups, each the nodes it is rooted at (a label is in a
#: category when one of these is the label or one of its WordNet ancestors). Names follow
#: Rekognition's own category names where one fits. The last is a fallback: an artifact
#: in no other category is an "Everyday Objects" (bottles, boxes, clocks, locks).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Animals and Pets", ("n00015388",)),  # animal
    ("Plants and Flowers", ("n00017222", "n13086908", "n12992868")),  # plant, plant part, fungus
    ("Person Description", ("n00007846",)),  # person
    ("Food and Beverage", ("n00021265", "n07555863")),  # food (nutrient), food (solid food)
    ("Vehicles and Automotive", ("n03100490",)),  # conveyance
    # clothing, footwear, jewelry
    ("Apparel and Accessories", ("n03051540", "n03381126", "n03597469")),
    # furnishing, home appliance, tableware
    ("Home and Indoors", ("n03405265", "n03528263", "n04381994")),
    ("Buildings and Architecture", ("n04341686",)),  # structure
    ("Nature and Outdoors", ("n09287968",)),  # geological formation
    ("Musical Instruments", ("n03800933",)),  # musical instrument
    ("Tools and Machinery", ("n03563967", "n03699975")),  # implement, machine
    ("Technology and Computing", ("n03278248", "n03277771", "n03082979", "n03078287")),
    # electronic equipment, electronic device, computer, communication system
    ("Sports", ("n04285146", "n03414162")),  # sports equipment, game equipment
    ("Weapons and Military", ("n04565375", "n02739668")),  # weapon, armor
)
FALLBACK_CATEGORY = ("Everyday Objects", "n00021939")  # artifact


@dataclass(frozen=True)
class Synset:
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]  # "@" (hypernym) and "@i" (instance hypernym) pointers


def read_nouns(wordnet_dir: Path) -> dict[str, Synset]:
    """Every noun synset of ``data.noun``, keyed ``n`` + offset, as ImageNet names them."""
    synsets: dict[str, Synset] = {}
    with (wordnet_dir / "data.noun").open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("  "):  # the license header
                continue
            fields = line.split(" | ", 1)[0].split()
            count = int(fields[3], 16)
            lemmas = tuple(fields[4 + 2 * i] for i in range(count))
            at = 4 + 2 * count
            hypernyms = []
            for i in range(int(fields[at])):
                symbol, offset, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
                if symbol in ("@", "@i") and pos == "n":
                    hypernyms.append("n" + offset)
            synsets["n" + fields[0]] = Synset(lemmas, tuple(hypernyms))
    return synsets


def license_notice(wordnet_dir: Path) -> str:
    """WordNet's license, from the numbered header lines of ``data.noun``."""
    text = []
    with (wordnet_dir / "data.noun").open(encoding="utf-8") as lines:
        for line in lines:
            if not line.startswith("  "):
                break
            text.append(re.sub(r"^\s*\d+ ?", "", line).rstrip())  # drop the line number
    return "\n".join(text).strip() + "\n"


def hypernym_paths(synsets: dict[str, Synset], node: str) -> list[list[str]]:
    """Every path from the root down to ``node``, in WordNet's pointer order."""
    parents = synsets[node].hypernyms
    if not parents:
        return [[node]]
    return [[*path, node] for parent in parents for path in hypernym_paths(synsets, parent)]


def readable(lemma: str) -> str:
    return lemma.replace("_", " ")


def build(wordnet_dir: Path = WORDNET_DIR) -> dict[str, Any]:
    """The hierarchy of the 1000 classes: what ``label_hierarchy.json`` holds."""
    synsets = read_nouns(wordnet_dir)
    index = json.loads(CLASS_INDEX.read_text(encoding="utf-8"))
    wnids = [index[str(i)][0] for i in range(len(index))]

    full_paths = {wnid: hypernym_paths(synsets, wnid) for wnid in wnids}
    kept_paths = {
        wnid: [[n for n in path if n not in EXCLUDED] for path in paths]
        for wnid, paths in full_paths.items()
    }
    # Classes under each node, counted once per class (for naming ties and categories).
    under: Counter[str] = Counter()
    ancestors: dict[str, set[str]] = {}  # node -> every WordNet ancestor, excluded ones too
    for paths in full_paths.values():
        for node in {n for path in paths for n in path}:
            under[node] += 1
        for path in paths:
            for i, node in enumerate(path):
                ancestors.setdefault(node, set()).update(path[:i])
    nodes = sorted({n for paths in kept_paths.values() for path in paths for n in path})

    names = _names(synsets, nodes, under)
    data_nodes = {}
    for node in nodes:
        first = readable(synsets[node].lemmas[0])
        aliases = list(
            dict.fromkeys(
                readable(lemma)
                for lemma in synsets[node].lemmas[1:]
                if readable(lemma).lower() != first.lower()
            )
        )
        data_nodes[node] = {
            "name": names[node],
            "aliases": aliases,
            "parents": _kept_parents(synsets, node),
            "categories": _categories(node, ancestors[node]),
        }
    return {
        "source": "WordNet 3.0 (Princeton University; license: WORDNET_LICENSE), "
        "built by scripts/build_label_hierarchy.py",
        "excluded": EXCLUDED,
        "categories": [name for name, _ in CATEGORIES] + [FALLBACK_CATEGORY[0]],
        "nodes": data_nodes,
        "classes": [kept_paths[wnid] for wnid in wnids],
    }


def _names(synsets: dict[str, Synset], nodes: list[str], under: Counter[str]) -> dict[str, str]:
    """Each node's first lemma, made unique where two synsets share it.

    Of the nodes sharing a name, the one with strictly the most classes under it keeps
    it ("car" the automobile, not the railway car); the others get their WordNet
    parent's name in brackets ("car (wheeled vehicle)", "crane (wading bird)"), and the
    synset id if that is still not unique.
    """
    plain = {node: readable(synsets[node].lemmas[0]) for node in nodes}
    by_name: dict[str, list[str]] = {}
    for node in nodes:
        by_name.setdefault(plain[node].lower(), []).append(node)
    names = dict(plain)
    for group in by_name.values():
        if len(group) == 1:
            continue
        ranked = sorted(group, key=lambda n: -under[n])
        keeper = ranked[0] if under[ranked[0]] > under[ranked[1]] else None
        for node in group:
            if node != keeper:
                parent = synsets[node].hypernyms[0]
                names[node] = f"{plain[node]} ({readable(synsets[parent].lemmas[0])})"
    taken = Counter(name.lower() for name in names.values())
    return {n: f"{name} ({n})" if taken[name.lower()] > 1 else name for n, name in names.items()}


def _kept_parents(synsets: dict[str, Synset], node: str) -> list[str]:
    """The nearest ancestors that are not excluded, in WordNet's pointer order."""
    found: list[str] = []
    for parent in synsets[node].hypernyms:
        for kept in [parent] if parent not in EXCLUDED else _kept_parents(synsets, parent):
            if kept not in found:
                found.append(kept)
    return found


def _categories(node: str, ancestors: set[str]) -> list[str]:
    lineage = ancestors | {node}
    found = [name for name, roots in CATEGORIES if lineage.intersection(roots)]
    if not found and FALLBACK_CATEGORY[1] in lineage:
        found = [FALLBACK_CATEGORY[0]]
    return found


def render(data: dict[str, Any]) -> str:
    """JSON with one node or class per line, so a rebuild shows up as a readable diff."""
    lines = ["{"]
    for key in ("source", "excluded", "categories"):
        lines.append(f"  {json.dumps(key)}: {json.dumps(data[key], ensure_ascii=False)},")
    lines.append('  "nodes": {')
    nodes = data["nodes"].items()
    entries = [f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in nodes]
    lines.append(",\n".join(entries))
    lines.append("  },")
    lines.append('  "classes": [')
    lines.append(",\n".join(f"    {json.dumps(paths)}" for paths in data["classes"]))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=WORDNET_DIR, help="WordNet 3.0 dict dir")
    parser.add_argument("--check", action="store_true", help="only compare with the shipped files")
    args = parser.parse_args(argv)
    outputs = {OUTPUT: render(build(args.wordnet)), LICENSE_OUTPUT: license_notice(args.wordnet)}
    if args.check:
        stale = [p for p, text in outputs.items() if not p.exists() or p.read_text("utf-8") != text]
        for path in stale:
            print(f"{path.relative_to(REPO)} is out of date: rerun {Path(__file__).name}")
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
