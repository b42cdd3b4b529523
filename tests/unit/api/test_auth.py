"""API keys configured as hashes: loading, failing closed, and checking a request's headers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from imagetagger.api.auth import (
    INVALID_KEY,
    MISSING_KEY,
    ApiKeys,
    hash_key,
)
from imagetagger.environment import API_KEY_HASHES_ENV as HASHES_ENV
from imagetagger.environment import API_KEY_HASHES_FILE_ENV as HASHES_FILE_ENV
from imagetagger.errors import Unauthorized

KEY = "tk_live_0123456789abcdef"
OTHER = "tk_live_fedcba9876543210"


def keys(*raw: str) -> ApiKeys:
    return ApiKeys([hash_key(key) for key in raw])


def test_hash_key_is_hex_sha256() -> None:
    assert hash_key(KEY) == hashlib.sha256(KEY.encode()).hexdigest()
    assert len(hash_key(KEY)) == 64


def test_bearer_and_x_api_key_are_accepted_as_the_same_client() -> None:
    accepted = keys(KEY, OTHER)
    client = accepted.identify([f"Bearer {KEY}"], [])
    assert client == f"key:{hash_key(KEY)[:16]}"
    assert accepted.identify([], [KEY]) == client
    assert accepted.identify([f"bearer   {KEY} "], []) == client  # scheme is case-insensitive
    assert accepted.identify([f"Bearer {KEY}"], [KEY]) == client  # both, the same key
    assert accepted.identify([], [OTHER]) != client
    assert KEY not in client


def test_missing_key_is_unauthorized() -> None:
    for authorization in ([], ["Basic dXNlcjpwdw=="]):  # another scheme is not ours
        with pytest.raises(Unauthorized) as caught:
            keys(KEY).identify(authorization, [])
        assert caught.value.detail == MISSING_KEY
        assert caught.value.status_code == 401
        assert caught.value.headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize(
    ("authorization", "api_key"),
    [
        (["Bearer wrong-key"], []),
        ([], ["wrong-key"]),
        ([f"Bearer {KEY.upper()}"], []),
        (["Bearer"], []),  # a scheme without a token
        (["Bearer "], []),
        ([], [""]),
        ([f"Bearer {KEY} extra"], []),
        ([], [f"{KEY}\x00"]),
        ([], [f"{KEY}é"]),
        ([], ["k" * 257]),
        ([f"Bearer {KEY}"], [OTHER]),  # two different keys
        ([f"Bearer {KEY}"], ["wrong"]),
        ([f"Bearer {KEY}", f"Bearer {KEY}"], []),  # a repeated header is ambiguous
        ([], [KEY, KEY]),
    ],
)
def test_wrong_or_malformed_key_is_unauthorized(
    authorization: list[str], api_key: list[str]
) -> None:
    with pytest.raises(Unauthorized) as caught:
        keys(KEY, OTHER).identify(authorization, api_key)
    assert caught.value.detail == INVALID_KEY
    assert KEY not in str(caught.value)


def test_hashes_are_validated_without_echoing_them() -> None:
    with pytest.raises(ValueError, match=r"^API key hash #2 is not a SHA-256 hex digest") as caught:
        ApiKeys([hash_key(KEY), KEY])  # a key pasted where its hash belongs
    assert KEY not in str(caught.value)
    with pytest.raises(ValueError, match="no API key hashes"):
        ApiKeys([])
    upper = ApiKeys([hash_key(KEY).upper(), f"  {hash_key(KEY)} "])
    assert len(upper) == 1  # the same hash twice is one key
    assert upper.identify([], [KEY]).startswith("key:")
    assert repr(upper) == "ApiKeys(1 keys)"


def test_no_configuration_means_keys_off() -> None:
    assert ApiKeys.from_environ({}) is None
    assert ApiKeys.from_environ({HASHES_ENV: ""}) is None
    assert ApiKeys.from_environ({HASHES_ENV: " , ", HASHES_FILE_ENV: ""}) is None


def test_keys_from_the_environment_variable() -> None:
    loaded = ApiKeys.from_environ({HASHES_ENV: f"{hash_key(KEY)}, {hash_key(OTHER)}"})
    assert loaded is not None and len(loaded) == 2
    assert loaded.identify([], [OTHER])
    lines = ApiKeys.from_environ({HASHES_ENV: f"{hash_key(KEY)}\n{hash_key(OTHER)}\n"})
    assert lines is not None and len(lines) == 2  # a Secret of one hash per line


def test_keys_from_a_file_and_the_variable_together(tmp_path: Path) -> None:
    path = tmp_path / "hashes"
    path.write_text(
        f"# imagetagger API keys\n{hash_key(KEY)}  -\n\n{hash_key(OTHER)} # the batch job\n"
    )
    loaded = ApiKeys.from_environ({HASHES_FILE_ENV: str(path)})
    assert loaded is not None and len(loaded) == 2
    third = "third-key"
    both = ApiKeys.from_environ({HASHES_FILE_ENV: str(path), HASHES_ENV: hash_key(third)})
    assert both is not None and len(both) == 3
    assert both.identify([f"Bearer {third}"], [])


def test_a_named_key_file_must_exist_and_hold_hashes(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(ValueError, match=rf"^cannot read {HASHES_FILE_ENV}=.*FileNotFoundError"):
        ApiKeys.from_environ({HASHES_FILE_ENV: str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="holds no API key hashes"):
        ApiKeys.from_environ({HASHES_FILE_ENV: str(empty)})
    raw = tmp_path / "raw"
    raw.write_text(KEY + "\n")
    with pytest.raises(ValueError, match="#1 is not a SHA-256") as caught:
        ApiKeys.from_environ({HASHES_FILE_ENV: str(raw)})
    assert KEY not in str(caught.value)
