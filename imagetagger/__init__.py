"""imagetagger: tag images with ImageNet-1K labels (the library; only bulk.pipeline imports Ray)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("imagetagger")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["__version__"]
