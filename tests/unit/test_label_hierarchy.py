"""The WordNet label hierarchy (data/label_hierarchy.json) and the general labels' arithmetic."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from imagetagger.hierarchy import general_labels, hierarchy, load_hierarchy_data
from imagetagger.labels import LABELS, NUM_CLASSES, WNIDS
from tests.paths import REPO_ROOT

REPO = REPO_ROOT
WORDNET = Path("/usr/share/wordnet")

CAT, DOMESTIC_CAT, DOG, CAR = "n02121620", "n02121808", "n02084071", "n02958343"


def _build_script():
    spec = importlib.util.spec_from_file_location(
        "build_label_hierarchy", REPO / "scripts" / "build_label_hierarchy.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def probabilities(**mass: float) -> np.ndarray:
    """A softmax-like vector: the named classes' mass, the rest spread evenly."""
    probs = np.zeros(NUM_CLASSES)
    for label, value in mass.items():
        probs[LABELS.index(label)] = value
    rest = [i for i in range(NUM_CLASSES) if probs[i] == 0]
    probs[rest] = (1.0 - probs.sum()) / len(rest)
    return probs


def by_id(labels):
    return {label.id: label for label in labels}


@pytest.mark.skipif(
    not (WORDNET / "data.noun").exists(),
    reason="WordNet 3.0 is not installed (apt-get install wordnet-base; make test does as root)",
)
def test_shipped_files_are_what_the_script_builds() -> None:
    pytest.importorskip("wordfreq")
    script = _build_script()
    data, decisions = script.build(WORDNET)
    shipped = resources.files("imagetagger").joinpath("data")
    assert shipped.joinpath("label_hierarchy.json").read_text("utf-8") == script.render(data)
    assert shipped.joinpath("WORDNET_LICENSE").read_text("utf-8") == script.license_notice(WORDNET)
    review = (REPO / "docs" / "general_labels_vocabulary.md").read_text("utf-8")
    assert review == script.render_review(data, decisions)


def test_license_notice_ships_with_the_data() -> None:
    notice = resources.files("imagetagger").joinpath("data", "WORDNET_LICENSE").read_text("utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in notice
    assert "Permission to use, copy, modify and distribute" in notice


def test_every_class_path_runs_from_a_top_node_to_its_class() -> None:
    data = load_hierarchy_data()
    nodes = data["nodes"]
    assert len(data["classes"]) == NUM_CLASSES
    for index, paths in enumerate(data["classes"]):
        assert paths, index
        for path in paths:
            assert path[-1] == WNIDS[index]
            assert nodes[path[0]]["parents"] == []
            for parent, child in itertools.pairwise(path):
                assert parent in nodes[child]["parents"], (index, parent, child)
    on_paths = {n for paths in data["classes"] for path in paths for n in path}
    assert set(nodes) == on_paths


def test_names_are_readable_unique_and_classes_keep_theirs() -> None:
    nodes = load_hierarchy_data()["nodes"]
    names = [node["name"] for node in nodes.values()]
    assert len({name.lower() for name in names}) == len(names)
    assert all("_" not in name for name in names)
    assert nodes[CAT]["name"] == "cat"
    assert nodes[DOMESTIC_CAT]["name"] == "domestic cat"
    assert nodes[DOMESTIC_CAT]["aliases"] == ["house cat", "Felis domesticus", "Felis catus"]
    assert nodes[DOG]["name"] == "dog"
    assert nodes[CAR]["name"] == "car"  # the automobile keeps the name; the railcar its synonym
    assert nodes["n02959942"]["name"] == "railcar"
    assert nodes["n02012849"]["name"] == "crane (wading bird)"  # a class keeps its name
    assert nodes["n03126707"]["name"] == "crane (lifting device)"
    for index, wnid in enumerate(WNIDS):  # every class is shown, under its Keras label spaced
        assert nodes[wnid]["name"].split(" (")[0] == LABELS[index].replace("_", " ")


#: WordNet's abstractions and clade terms: what issue 30 found in answers.
JARGON = {
    "entity", "physical entity", "object", "whole", "living thing", "organism", "artifact",
    "instrumentality", "matter", "substance", "solid", "part", "chordate", "vertebrate",
    "invertebrate", "placental", "oscine", "passerine", "diapsid", "saurian", "anapsid",
    "ungulate", "even-toed ungulate", "ruminant", "bovid", "arthropod", "conveyance",
    "commodity", "consumer goods", "durables", "covering", "protective covering",
    "container", "device", "structure", "implement", "equipment", "instrument",
    "self-propelled vehicle", "wheeled vehicle", "domestic animal", "aquatic vertebrate",
}  # fmt: skip
FAMILIAR = {
    "animal", "mammal", "cat", "dog", "bird", "fish", "reptile", "insect", "car", "boat",
    "aircraft", "vehicle", "furniture", "food", "plant", "flower", "building", "clothing",
    "musical instrument", "fruit", "vegetable", "tool", "weapon",
}  # fmt: skip


def test_no_abstraction_or_clade_term_is_shown_and_the_familiar_groups_are() -> None:
    names = {node["name"] for node in load_hierarchy_data()["nodes"].values()}
    assert not names & JARGON
    assert names >= FAMILIAR


def test_categories_come_from_the_documented_list() -> None:
    data = load_hierarchy_data()
    known = set(data["categories"])
    assert {"Animals and Pets", "Vehicles and Automotive", "Food and Beverage"} <= known
    for node in data["nodes"].values():
        assert set(node["categories"]) <= known
    nodes = data["nodes"]
    assert nodes[DOMESTIC_CAT]["categories"] == ["Animals and Pets"]
    assert nodes[CAR]["categories"] == ["Vehicles and Automotive"]
    assert "Food and Beverage" in nodes[WNIDS[LABELS.index("pizza")]]["categories"]


def test_cat_is_the_sum_of_its_classes() -> None:
    probs = probabilities(Egyptian_cat=0.614, tiger_cat=0.142, tabby=0.095, lynx=0.012)
    labels = by_id(general_labels(probs, minconf=0.0))
    classes = load_hierarchy_data()["classes"]
    cat_classes = [i for i, paths in enumerate(classes) if any(CAT in p for p in paths)]
    assert len(cat_classes) > 3
    assert labels[CAT].confidence == pytest.approx(probs[cat_classes].sum(), abs=1e-12)
    domestic = ["tabby", "tiger_cat", "Persian_cat", "Siamese_cat", "Egyptian_cat"]
    assert labels[DOMESTIC_CAT].confidence == pytest.approx(
        sum(probs[LABELS.index(name)] for name in domestic), abs=1e-12
    )
    assert labels[DOMESTIC_CAT].confidence > 0.85
    assert labels[CAT].parents[0] == "feline"
    assert labels[DOMESTIC_CAT].parents[0] == "cat"
    assert {"feline", "mammal", "animal"} <= set(labels[DOMESTIC_CAT].parents)
    # the fine class is a node too, with its own probability
    assert labels[WNIDS[LABELS.index("Egyptian_cat")]].confidence == pytest.approx(0.614)


def test_a_node_that_is_not_shown_still_passes_its_classes_up() -> None:
    probs = np.zeros(NUM_CLASSES)
    probs[LABELS.index("tabby")] = 1.0  # under "placental", "carnivore", "domestic animal"
    labels = general_labels(probs, minconf=0.0)
    named = {label.name: label.confidence for label in labels}
    assert named["mammal"] == named["animal"] == named["cat"] == 1.0


def test_a_class_with_two_paths_counts_once() -> None:
    data = load_hierarchy_data()
    index = LABELS.index("tank")  # a military vehicle and a tracked vehicle
    paths = data["classes"][index]
    assert len(paths) >= 2
    shared = set.intersection(*(set(p) for p in paths)) - {WNIDS[index]}
    assert shared  # both pass through "vehicle"
    probs = np.zeros(NUM_CLASSES)
    probs[index] = 1.0
    labels = by_id(general_labels(probs, minconf=0.0))
    assert all(labels[node].confidence == 1.0 for node in shared)


def test_confidences_never_pass_one() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=NUM_CLASSES) * 3
    probs = np.exp(logits) / np.exp(logits).sum()
    labels = general_labels(probs, minconf=0.0)
    assert len(labels) == len(hierarchy())
    assert max(label.confidence for label in labels) <= 1.0 + 1e-12


CHELSEA = {"Egyptian_cat": 0.614, "tiger_cat": 0.142, "tabby": 0.095, "lynx": 0.012}


def test_the_specific_label_comes_first_then_its_groups_nearest_first() -> None:
    chosen = general_labels(probabilities(**CHELSEA))
    names = [label.name for label in chosen]
    assert names == ["Egyptian cat", "domestic cat", "cat", "feline", "mammal", "animal"]
    assert all(label.confidence >= 0.5 for label in chosen)


def test_no_label_comes_after_a_group_above_it() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        logits = rng.normal(size=NUM_CLASSES) * 4
        probs = np.exp(logits) / np.exp(logits).sum()
        chosen = general_labels(probs, minconf=0.001)
        for i, label in enumerate(chosen):
            assert all(other.name not in label.parents for other in chosen[:i]), label.name


def test_at_least_three_labels_by_default_with_their_true_confidence() -> None:
    probs = probabilities(canoe=0.3, paddle=0.25, speedboat=0.1)
    chosen = general_labels(probs)
    assert len(chosen) >= 3
    every = by_id(general_labels(probs, minconf=0.0))
    for label in chosen:
        assert label.confidence == every[label.id].confidence
    assert any(label.confidence < 0.5 for label in chosen)
    assert len(general_labels(probs, top=2)) == 2  # top is a cap, below 3 too


def test_a_floor_sent_is_honoured_and_top_caps() -> None:
    probs = probabilities(**CHELSEA)
    assert all(label.confidence >= 0.9 for label in general_labels(probs, minconf=0.9))
    assert general_labels(probs, minconf=0.99) == []  # a sent floor is strict: no fill
    assert [label.name for label in general_labels(probs, top=3)] == [
        "Egyptian cat",
        "domestic cat",
        "cat",
    ]
    assert len(general_labels(probs)) <= 10  # neither sent: at most DEFAULT_TOP
    wide = general_labels(probs, minconf=0.01)
    assert len(wide) > 10  # only minconf sent: no cap
    assert [label.name for label in wide[:2]] == ["Egyptian cat", "tiger cat"]
    with pytest.raises(ValueError):
        general_labels(probs, top=0)
    with pytest.raises(ValueError):
        general_labels(np.zeros(10))


def test_to_dict_is_json_ready() -> None:
    (label,) = general_labels(probabilities(tabby=0.9), top=1)
    assert label.name == "tabby"
    assert set(label.to_dict()) == {"label", "id", "confidence", "parents", "aliases", "categories"}
    assert isinstance(label.to_dict()["parents"], list)
