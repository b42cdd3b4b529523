"""imagetagger: tag images with ImageNet-1K labels (the library).

No module imports Ray when imported; only the bulk job (``bulk/pipeline.py``) and its
command (``cli/tag.py``) import it, inside the functions that run a Ray job.
``serving/`` starts Ray's and Serve's processes without importing Ray.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata when first asked for.

    Lazily, because importlib.metadata costs ~60 ms, paid by every process that
    imports the package: HAProxy's wrapper runs at each of Serve's HAProxy reloads.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("imagetagger")
    except PackageNotFoundError:  # running from a source tree without installing
        value = "0.0.0"
    globals()["__version__"] = value
    return value
