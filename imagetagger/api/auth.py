"""Optional API keys for the tagging routes, configured as SHA-256 hashes, never as keys.

The operator gives the hex SHA-256 of each key (``printf %s "$KEY" | sha256sum``), in
``IMAGETAGGER_API_KEY_HASHES`` (separated by commas or whitespace, so a Kubernetes
Secret of one hash per line works as an env var) and/or in the file named by
``IMAGETAGGER_API_KEY_HASHES_FILE`` (one per line, ``sha256sum`` output accepted, ``#``
comments; a mounted Kubernetes Secret). So no key sits in a config, an environment
dump or a manifest. Neither variable set: keys are off and every request passes (the
original's clients keep working).

Clients send ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. The presented key is
hashed and compared with every configured hash with :func:`hmac.compare_digest`, all
of them each time, so the answer's timing tells neither the key nor which one matched.
Nothing here logs a key, presented or configured.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from imagetagger.environment import API_KEY_HASHES_ENV, API_KEY_HASHES_FILE_ENV
from imagetagger.errors import INVALID_KEY, MISSING_KEY, Unauthorized

# Longer is not a key anyone was given; refuse it before hashing.
MAX_KEY_LENGTH = 256


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# Visible ASCII only: a key with spaces or control characters is malformed, not guessed at.
_KEY = re.compile(r"[\x21-\x7e]+")


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key``: what goes into the configuration."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The accepted keys, held as SHA-256 digests; :meth:`identify` checks a request."""

    def __init__(self, hashes: Iterable[str]) -> None:
        digests: list[bytes] = []
        for number, entry in enumerate(hashes, start=1):
            value = entry.strip().lower()
            if not _SHA256_HEX.fullmatch(value):
                # The value is not echoed: it may be a key pasted where its hash belongs.
                raise ValueError(
                    f"API key hash #{number} is not a SHA-256 hex digest (64 hex characters)"
                )
            digests.append(bytes.fromhex(value))
        if not digests:
            raise ValueError("no API key hashes given")
        self._digests = tuple(dict.fromkeys(digests))

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"ApiKeys({len(self)} keys)"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ApiKeys | None:
        """The keys the environment configures, or None when keys are off.

        Fails closed: a hashes file that is named but unreadable or empty, or an entry
        that is not a hash, raises ``ValueError`` (the replica does not start), rather
        than serving without keys.
        """
        env = os.environ if environ is None else environ
        entries = env.get(API_KEY_HASHES_ENV, "").replace(",", " ").split()
        path = env.get(API_KEY_HASHES_FILE_ENV, "").strip()
        if path:
            entries += _read_hashes_file(Path(path))
        return cls(entries) if entries else None

    def identify(self, authorization: Sequence[str], api_key: Sequence[str]) -> str:
        """The caller's client id (for rate limits) if it presents a valid key.

        ``authorization`` and ``api_key`` are every value of those headers. A Bearer
        token and an ``X-API-Key`` may both be sent, but then both must be the same valid
        key; an ``Authorization`` header of another scheme (Basic, for a proxy in front)
        is not ours and is ignored. Raises :class:`Unauthorized` otherwise.
        """
        if len(authorization) > 1 or len(api_key) > 1:
            raise Unauthorized(INVALID_KEY)
        presented = list(api_key)
        if authorization:
            scheme, _, token = authorization[0].strip().partition(" ")
            if scheme.lower() == "bearer":
                presented.append(token.strip())
        if not presented:
            raise Unauthorized(MISSING_KEY)
        ids = {self.client_id(key.strip()) for key in presented}
        if None in ids or len(ids) != 1:
            raise Unauthorized(INVALID_KEY)
        (client,) = ids
        assert client is not None
        return client

    def client_id(self, key: str) -> str | None:
        """The client id of ``key`` if it is one of the configured keys, else None.

        The label-API routes (imagetagger/label_apis) present keys their own way
        (``x-goog-api-key``, a SigV4 access key id) and check them here.
        """
        if not key or len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
            return None
        digest = hashlib.sha256(key.encode("ascii")).digest()
        found: bytes | None = None
        for candidate in self._digests:  # no early exit: the time does not say which matched
            if hmac.compare_digest(digest, candidate):
                found = candidate
        # A short prefix of the hash names the client; it is not the key and cannot give it.
        return None if found is None else f"key:{found.hex()[:16]}"


def _read_hashes_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"cannot read {API_KEY_HASHES_FILE_ENV}={path}: {type(exc).__name__}"
        ) from None
    entries = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields:
            entries.append(fields[0])  # `sha256sum` output: the hash, then a name
    if not entries:
        raise ValueError(f"{API_KEY_HASHES_FILE_ENV}={path} holds no API key hashes")
    return entries
