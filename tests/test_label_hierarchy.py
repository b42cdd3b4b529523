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

REPO = Path(__file__).resolve().parent.parent
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
    reason="WordNet 3.0 is not installed (apt-get install wordnet-base; .ci/run does)",
)
def test_shipped_files_are_what_the_script_builds() -> None:
    script = _build_script()
    shipped = resources.files("imagetagger").joinpath("data")
    assert shipped.joinpath("label_hierarchy.json").read_text("utf-8") == script.render(
        script.build(WORDNET)
    )
    assert shipped.joinpath("WORDNET_LICENSE").read_text("utf-8") == script.license_notice(WORDNET)


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


def test_names_are_readable_unique_and_classes_keep_theirs() -> None:
    nodes = load_hierarchy_data()["nodes"]
    names = [node["name"] for node in nodes.values()]
    assert len({name.lower() for name in names}) == len(names)
    assert all("_" not in name for name in names)
    assert nodes[CAT]["name"] == "cat"
    assert nodes[DOMESTIC_CAT]["name"] == "domestic cat"
    assert nodes[DOMESTIC_CAT]["aliases"] == ["house cat", "Felis domesticus", "Felis catus"]
    assert nodes[DOG]["name"] == "dog"
    assert nodes[CAR]["name"] == "car"  # the automobile keeps the name; the railcar does not
    assert nodes["n02959942"]["name"] == "car (wheeled vehicle)"
    assert nodes["n02012849"]["name"] == "crane (wading bird)"
    assert nodes["n03126707"]["name"] == "crane (lifting device)"
    for index, wnid in enumerate(WNIDS):  # a class's name is its Keras label, spaced
        assert nodes[wnid]["name"].split(" (")[0] == LABELS[index].replace("_", " ")


def test_abstract_nodes_are_left_out() -> None:
    data = load_hierarchy_data()
    excluded = data["excluded"]
    assert {"entity", "physical entity", "object", "whole", "artifact", "organism"} <= set(
        excluded.values()
    )
    assert len(excluded) <= 20  # a short list
    assert not set(excluded) & set(data["nodes"])
    on_paths = {n for paths in data["classes"] for path in paths for n in path}
    assert not set(excluded) & on_paths
    assert set(data["nodes"]) == on_paths


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
    assert labels[DOMESTIC_CAT].parents[:2] == ("cat", "domestic animal")
    # the fine class is a node too, with its own probability
    assert labels[WNIDS[LABELS.index("Egyptian_cat")]].confidence == pytest.approx(0.614)


def test_a_class_with_two_paths_counts_once() -> None:
    data = load_hierarchy_data()
    index = LABELS.index("tabby")
    paths = data["classes"][index]
    assert len(paths) == 2  # ...cat > domestic cat > tabby, and domestic animal > domestic cat
    assert all("n00015388" in p for p in paths)  # both pass through "animal"
    probs = np.zeros(NUM_CLASSES)
    probs[index] = 1.0
    labels = by_id(general_labels(probs, minconf=0.0))
    assert labels["n00015388"].confidence == 1.0
    assert labels[DOMESTIC_CAT].confidence == 1.0


def test_confidences_never_pass_one_and_are_sorted() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=NUM_CLASSES) * 3
    probs = np.exp(logits) / np.exp(logits).sum()
    labels = general_labels(probs, minconf=0.0)
    assert len(labels) == len(hierarchy())
    confidences = [label.confidence for label in labels]
    assert max(confidences) <= 1.0 + 1e-12
    assert confidences == sorted(confidences, reverse=True)


def test_top_and_minconf_select_like_predictions() -> None:
    probs = probabilities(Egyptian_cat=0.614, tiger_cat=0.142, tabby=0.095)
    assert len(general_labels(probs)) == 1
    assert general_labels(probs)[0].name == "animal"
    assert len(general_labels(probs, top=7)) == 7
    above = general_labels(probs, minconf=0.5)
    assert above and all(label.confidence >= 0.5 for label in above)
    assert "cat" in {label.name for label in above}
    assert len(general_labels(probs, top=3, minconf=0.5)) == 3
    with pytest.raises(ValueError):
        general_labels(probs, top=0)
    with pytest.raises(ValueError):
        general_labels(np.zeros(10))


def test_equal_confidences_put_the_more_specific_first() -> None:
    probs = probabilities(tabby=0.9)
    labels = general_labels(probs, top=3)
    assert [label.name for label in labels] == ["animal", "vertebrate", "chordate"]
    assert labels[1].confidence == labels[2].confidence  # every chordate here is a vertebrate


def test_to_dict_is_json_ready() -> None:
    (label,) = general_labels(probabilities(tabby=0.9), top=1)
    assert set(label.to_dict()) == {"label", "id", "confidence", "parents", "aliases", "categories"}
    assert isinstance(label.to_dict()["parents"], list)


def test_a_top_under_a_floor_keeps_the_most_specific_labels_best_first() -> None:
    probs = probabilities(Egyptian_cat=0.614, tiger_cat=0.142, tabby=0.095)
    chosen = general_labels(probs, top=3, minconf=0.5)
    assert [label.name for label in chosen] == ["cat", "domestic cat", "Egyptian cat"]
    assert [label.confidence for label in chosen] == sorted(
        (label.confidence for label in chosen), reverse=True
    )
    over_floor = general_labels(probs, minconf=0.5)
    assert {label.name for label in chosen} < {label.name for label in over_floor}
