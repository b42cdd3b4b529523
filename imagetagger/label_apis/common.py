"""What both label APIs share: how keys are checked, names shown, base64 decoded."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Protocol

from imagetagger.errors import encodable

__all__ = ["KeyMatcher", "decode_base64", "display_name", "encodable"]

_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


class KeyMatcher(Protocol):
    """The configured API keys (``imagetagger.api.auth.ApiKeys`` is one)."""

    def client_id(self, key: str) -> str | None:
        """The client id (for rate limits) of a configured key, else None."""
        ...


def display_name(name: str) -> str:
    """A label as both APIs show theirs, first letter upper case: "cat" -> "Cat".

    A first word that already has a capital ("iPod", "CD player") is left as it is.
    """
    first = name.split(" ", 1)[0]
    return name if first != first.lower() else name[:1].upper() + name[1:]


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (as protobuf's JSON accepts).

    Raises ``ValueError`` for anything else, whitespace included.
    """
    if not _BASE64.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise ValueError("not base64")
    padded = text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64") from exc
