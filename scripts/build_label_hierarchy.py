"""Build imagetagger/data/label_hierarchy.json from WordNet 3.0, at development time.

The 1000 ImageNet-1K classes are WordNet 3.0 noun synsets (``n02124075`` is offset
02124075 of ``data.noun``). This reads Debian's ``wordnet-base`` files directly (no
WordNet library; the service never reads WordNet) and chooses the *display vocabulary*:
which WordNet nodes above the classes are shown as general labels. It writes, for every
class, its path(s) through the shown nodes and, for every shown node, a readable name,
its synonyms, its nearest shown parents and its categories; the review table
``docs/general_labels_vocabulary.md`` lists every WordNet node above a class, shown or
dropped, with the reason. It also copies WordNet's license notice next to the data.

The rule (docs/API.md says it to clients): every class is shown. A node above classes is
shown when (1) its name is an everyday word: Zipf frequency >= 3.0 in ``wordfreq``'s
English list ("dog" 5.1, "mammal" 3.3; "vertebrate" 2.97, "placental" 2.6, "chordate"
1.3 are not); (2) it is not above two categories (a node whose classes fall in no one
category, "device", "container", "covering", "commodity", "object", is an abstraction);
(3) it groups at least two classes, unless WordNet files it as an animal, plant or food
("horse" over its one class "sorrel"; "product" over "web site" is not); and (4) it is not
on the reviewed ``DENY`` list, WordNet's classification terms made of common words
("structure", "implement", "self-propelled vehicle"). ``ALLOW`` adds back a few familiar
groups whose words are rare ("amphibian", "crustacean"). A node that is not shown still
passes its classes' probability to the shown nodes above it.

    apt-get install wordnet-base; pip install 'wordfreq==3.1.1'   # (the test extras)
    python scripts/build_label_hierarchy.py            # rewrite the three files
    python scripts/build_label_hierarchy.py --check    # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "imagetagger" / "data"
CLASS_INDEX = DATA / "imagenet_class_index.json"
OUTPUT = DATA / "label_hierarchy.json"
LICENSE_OUTPUT = DATA / "WORDNET_LICENSE"
REVIEW_OUTPUT = REPO / "docs" / "general_labels_vocabulary.md"
WORDNET_DIR = Path("/usr/share/wordnet")

#: (1) A shown name is at least this common: Zipf 3 is once per million words.
MIN_ZIPF = 3.0
#: (3) WordNet's lexicographer files whose nodes may be shown over a single class.
SHOWN_OVER_ONE_CLASS = {5: "noun.animal", 13: "noun.food", 20: "noun.plant"}

#: (4) Reviewed: common words that WordNet uses as classification terms, never a tag.
DENY: dict[str, str] = {
    # Ways of classifying, not things you would point at.
    "n15046900": "solid",
    "n03892891": "part",
    "n00033020": "communication",
    "n03700963": "machine (mechanical device; 'simple machine')",
    "n03381126": "footwear (clothing): the other 'footwear' synset shows",
    "n04341686": "structure",
    "n03563967": "implement",
    "n03405265": "furnishing",
    "n07705711": "produce",
    "n03736970": "mechanical device",
    "n00022903": "article",
    "n03932203": "piece",
    "n03932670": "piece of cloth",
    "n04359589": "support",
    "n04361095": "supporting structure",
    "n04550840": "ware",
    "n04263760": "source of illumination",
    "n04453910": "top",
    "n03391770": "framework",
    "n03050026": "cloth covering",
    "n03546340": "housing",
    "n04317420": "stick",
    "n04580493": "white goods",
    "n03248958": "drug of abuse",
    "n03839993": "obstruction",
    "n03297735": "establishment",
    "n03748162": "mercantile establishment",
    "n03953020": "place of business",
    "n14939900": "fluid",
    "n14940386": "liquid",
    "n07556970": "course",
    "n07560652": "fare",
    "n07800091": "feed",
    "n07800740": "fodder",
    "n04296261": "staff",
    "n03413828": "game (game equipment)",
    "n02152991": "game (animal hunted)",
    "n01317541": "domestic animal",
    # WordNet's technical groupings spelt in common words.
    "n04576211": "wheeled vehicle",
    "n04170037": "self-propelled vehicle",
    "n03125870": "craft",
    "n03510583": "heavier-than-air craft",
    "n03666917": "lighter-than-air craft",
    "n02817799": "beating-reed instrument",
    "n03228016": "double-reed instrument",
    "n03393324": "free-reed instrument",
    "n02895606": "breathing device",
    "n11675842": "reproductive structure",
    "n13086908": "plant part",
    "n13087625": "plant organ",
    "n13083586": "vascular plant",
    "n07705931": "edible fruit",
    "n09287968": "geological formation",
    "n09366317": "natural elevation",
    "n02514825": "bony fish",
    "n02512938": "food fish",
    "n01640846": "true frog",
    "n01983048": "true lobster",
    "n02483092": "lesser ape",
    "n02402010": "bovine",
    "n02374149": "equine",
}
#: Reviewed: familiar groups whose words are rarer than MIN_ZIPF.
ALLOW: dict[str, str] = {
    "n01627424": "amphibian",
    "n01974773": "crustacean",
    "n02101108": "spaniel",
    "n02099029": "retriever",
    "n01874434": "marsupial",
    "n02021795": "seabird",
    "n01845132": "waterfowl",
    "n04338517": "stringed instrument",
    "n03621049": "kitchen utensil",
}
#: Synsets shown as one label: the key's classes are counted under the value.
MERGE: dict[str, str] = {
    "n00021265": "n07555863",  # food (nutrient) -> food (solid food)
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
    lexfile: int  # WordNet's lexicographer file: 5 noun.animal, 6 noun.artifact, ...


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
            synsets["n" + fields[0]] = Synset(lemmas, tuple(hypernyms), int(fields[1]))
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


def zipf(name: str) -> float:
    """How common a name is in English (wordfreq's Zipf scale: 3 = once per million words)."""
    from wordfreq import zipf_frequency  # a development dependency (the test extras)

    return zipf_frequency(name, "en")


@dataclass(frozen=True)
class Decision:
    node: str
    name: str
    classes: int
    zipf: float
    shown: bool
    why: str


def decide(
    node: str, synset: Synset, classes: set[int], class_categories: list[tuple[str, ...]]
) -> Decision:
    """Whether a node above classes is shown, and why (the rule in the module docstring)."""
    name = readable(synset.lemmas[0])
    frequency = round(zipf(name), 2)
    shared = set.intersection(*(set(class_categories[i] or ("none",)) for i in classes))

    def decision(shown: bool, why: str) -> Decision:
        return Decision(node, name, len(classes), frequency, shown, why)

    if node in MERGE:
        return decision(False, f"counted under {MERGE[node]}")
    if node in ALLOW:
        return decision(True, "allowed: a familiar group")
    if node in DENY:
        return decision(False, "denied: a classification term")
    if frequency < MIN_ZIPF:
        return decision(False, "rare word")
    if not shared:
        return decision(False, "above several categories")
    if len(classes) < 2 and synset.lexfile not in SHOWN_OVER_ONE_CLASS:
        return decision(False, "one class, not an animal, plant or food")
    return decision(True, "everyday word, one category")


def build(wordnet_dir: Path = WORDNET_DIR) -> tuple[dict[str, Any], list[Decision]]:
    """``label_hierarchy.json``'s content, and the decision on every node above a class."""
    synsets = read_nouns(wordnet_dir)
    index = json.loads(CLASS_INDEX.read_text(encoding="utf-8"))
    wnids = [index[str(i)][0] for i in range(len(index))]
    full_paths = {wnid: hypernym_paths(synsets, wnid) for wnid in wnids}
    under: dict[str, set[int]] = {}  # node -> the classes under it
    ancestors: dict[str, set[str]] = {}  # node -> every WordNet ancestor
    for position, wnid in enumerate(wnids):
        for path in full_paths[wnid]:
            for i, node in enumerate(path):
                under.setdefault(node, set()).add(position)
                ancestors.setdefault(node, set()).update(path[:i])
    class_categories = [_categories(wnid, ancestors[wnid]) for wnid in wnids]
    classes = set(wnids)
    decisions = sorted(
        (
            decide(node, synsets[node], under[node], class_categories)
            for node in under
            if node not in classes
        ),
        key=lambda d: (-d.classes, d.name.lower(), d.node),
    )
    shown = classes | {d.node for d in decisions if d.shown}

    def kept(path: list[str]) -> list[str]:
        return list(dict.fromkeys(MERGE.get(n, n) for n in path if n in shown or n in MERGE))

    kept_paths = {
        wnid: _paths([kept(path) for path in paths]) for wnid, paths in full_paths.items()
    }
    nodes = sorted({n for paths in kept_paths.values() for path in paths for n in path})
    merged_into = {keeper: [src for src, dst in MERGE.items() if dst == keeper] for keeper in nodes}
    names = _names(synsets, nodes, under, classes)
    data_nodes = {}
    for node in nodes:
        lemmas = [readable(x) for n in (node, *merged_into[node]) for x in synsets[n].lemmas]
        categories = set()
        for n in (node, *merged_into[node]):
            categories.update(_categories(n, ancestors[n]))
        data_nodes[node] = {
            "name": names[node],
            "aliases": [a for a in dict.fromkeys(lemmas) if a.lower() != lemmas[0].lower()],
            "parents": _shown_parents(synsets, shown, node, merged_into[node]),
            "categories": [
                name for name, _ in (*CATEGORIES, FALLBACK_CATEGORY) if name in categories
            ],
        }
    data = {
        "source": "WordNet 3.0 (Princeton University; license: WORDNET_LICENSE), "
        "built by scripts/build_label_hierarchy.py; the nodes are the shown ones",
        "categories": [name for name, _ in CATEGORIES] + [FALLBACK_CATEGORY[0]],
        "nodes": data_nodes,
        "classes": [kept_paths[wnid] for wnid in wnids],
    }
    return data, decisions


def _paths(paths: list[list[str]]) -> list[list[str]]:
    """Distinct paths, less those inside another: a path through a hidden branch ("container"
    above "wheeled vehicle") is a part of one through a shown node ("vehicle")."""
    unique = [list(p) for p in dict.fromkeys(tuple(p) for p in paths)]

    def inside(short: list[str], long: list[str]) -> bool:
        rest = iter(long)
        return short != long and all(node in rest for node in short)

    return [p for p in unique if not any(inside(p, other) for other in unique)]


def _names(
    synsets: dict[str, Synset], nodes: list[str], under: dict[str, set[int]], classes: set[str]
) -> dict[str, str]:
    """Each shown node's first lemma, made unique where two shown synsets share it.

    Of the nodes sharing a name, the one with strictly the most classes under it keeps
    it ("car" the automobile). A group that loses takes its first synonym no other node
    uses ("railcar", "watercraft"); a class, or a group with none, gets its WordNet
    parent's name in brackets ("crane (wading bird)"), then the synset id if need be.
    """
    plain = {node: readable(synsets[node].lemmas[0]) for node in nodes}
    used = {name.lower() for name in plain.values()}
    by_name: dict[str, list[str]] = {}
    for node in nodes:
        by_name.setdefault(plain[node].lower(), []).append(node)
    names = dict(plain)
    for group in by_name.values():
        if len(group) == 1:
            continue
        ranked = sorted(group, key=lambda n: -len(under[n]))
        keeper = ranked[0] if len(under[ranked[0]]) > len(under[ranked[1]]) else None
        for node in group:
            if node == keeper:
                continue
            synonyms = [readable(x) for x in synsets[node].lemmas[1:]]
            free = [s for s in synonyms if s.lower() not in used] if node not in classes else []
            if free:
                names[node] = free[0]
                used.add(free[0].lower())
            else:
                parent = synsets[node].hypernyms[0]
                names[node] = f"{plain[node]} ({readable(synsets[parent].lemmas[0])})"
    taken: dict[str, int] = {}
    for name in names.values():
        taken[name.lower()] = taken.get(name.lower(), 0) + 1
    return {n: f"{name} ({n})" if taken[name.lower()] > 1 else name for n, name in names.items()}


def _shown_parents(
    synsets: dict[str, Synset], shown: set[str], node: str, merged: list[str]
) -> list[str]:
    """The nearest shown ancestors, in WordNet's pointer order (merged synsets as one)."""
    found: list[str] = []

    def climb(current: str) -> None:
        for parent in synsets[current].hypernyms:
            target = MERGE.get(parent, parent)
            if target in shown:
                if target != node and target not in found:
                    found.append(target)
            else:
                climb(parent)

    for start in (node, *merged):
        climb(start)
    return found


def _categories(node: str, ancestors: set[str]) -> tuple[str, ...]:
    lineage = ancestors | {node}
    found = tuple(name for name, roots in CATEGORIES if lineage.intersection(roots))
    if not found and FALLBACK_CATEGORY[1] in lineage:
        found = (FALLBACK_CATEGORY[0],)
    return found


def render(data: dict[str, Any]) -> str:
    """JSON with one node or class per line, so a rebuild shows up as a readable diff."""
    lines = ["{"]
    for key in ("source", "categories"):
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


def render_review(data: dict[str, Any], decisions: list[Decision]) -> str:
    """The review table: every WordNet node above a class, shown or dropped, and why."""
    shown = [d for d in decisions if d.shown]
    lines = [
        "# The general labels' vocabulary (generated)",
        "",
        "Written by `scripts/build_label_hierarchy.py` (the rule is in its docstring and in",
        "docs/API.md); do not edit. Every WordNet 3.0 node above an ImageNet-1K class, with",
        "how many classes it groups and its name's Zipf frequency (wordfreq, English). All",
        f"1000 classes are shown too. {len(shown)} groups shown, "
        f"{len(decisions) - len(shown)} dropped.",
        "",
        "| shown | label | WordNet name | id | classes | Zipf | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in decisions:
        label = data["nodes"][d.node]["name"] if d.shown else ""
        lines.append(
            f"| {'yes' if d.shown else 'no'} | {label} | {d.name} | {d.node} | {d.classes} "
            f"| {d.zipf:.2f} | {d.why} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=WORDNET_DIR, help="WordNet 3.0 dict dir")
    parser.add_argument("--check", action="store_true", help="only compare with the shipped files")
    args = parser.parse_args(argv)
    data, decisions = build(args.wordnet)
    outputs = {
        OUTPUT: render(data),
        REVIEW_OUTPUT: render_review(data, decisions),
        LICENSE_OUTPUT: license_notice(args.wordnet),
    }
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
