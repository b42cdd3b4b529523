"""Domain errors a client can cause, and the one table that maps them to HTTP.

Library code raises these; the ingress turns any of them into
``{"error": {"type": ..., "detail": ...}}`` with the status below. Nothing else
in the code base decides an error's status or wording.
"""

from __future__ import annotations

from typing import ClassVar


class ImageTaggerError(Exception):
    """Base class of every client-caused error; carries its HTTP status and JSON type."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "InternalError"
    default_detail: ClassVar[str] = "Internal error."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def __reduce__(self):  # keep the detail when Ray pickles the error across processes
        return (type(self), (self.detail,))

    def to_dict(self) -> dict[str, str]:
        return {"type": self.error_type, "detail": self.detail}


class InvalidImage(ImageTaggerError):
    status_code = 400
    error_type = "InvalidImage"
    default_detail = "Url is not pointing to a valid image format."


class ForbiddenURL(ImageTaggerError):
    status_code = 403
    error_type = "ForbiddenURL"
    default_detail = "Url resolves to an address that is not allowed."


class UnreachableURL(ImageTaggerError):
    status_code = 404
    error_type = "UnreachableURL"
    default_detail = "Url cannot be reached."


class ImageTooLarge(ImageTaggerError):
    status_code = 413
    error_type = "ImageTooLarge"
    default_detail = "Image is larger than this service accepts."


class Overloaded(ImageTaggerError):
    status_code = 503
    error_type = "Overloaded"
    default_detail = "The service is overloaded; retry later."


class ModelLoadError(RuntimeError):
    """A model's weights could not be loaded; raised at startup, never per request."""


ERROR_TABLE: dict[str, type[ImageTaggerError]] = {
    cls.error_type: cls
    for cls in (InvalidImage, ForbiddenURL, UnreachableURL, ImageTooLarge, Overloaded)
}
