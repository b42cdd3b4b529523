"""The error both model-serving protocols answer: ``{"error": message}`` with a status.

The Open Inference Protocol (KServe V2, Triton) and Hugging Face's Inference API word
every error the same way; only the message and the status vary.
"""

from __future__ import annotations

from imagetagger.errors import ImageTaggerError


class JsonError(Exception):
    """A refused request: ``{"error": message}`` with ``status`` and ``headers``."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = dict(headers or {})

    @classmethod
    def of(cls, error: ImageTaggerError, prefix: str = "") -> JsonError:
        """A domain error (its status, detail and headers) in the protocols' shape."""
        return cls(prefix + error.detail, error.status_code, error.headers)

    def body(self) -> dict[str, str]:
        return {"error": self.message}
