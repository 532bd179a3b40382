"""Encoding of state values to bytes and back (`Codec`), and the msgpack codec every backend uses.

No pickle anywhere: values are msgpack (via msgspec), numpy arrays travel as raw little-endian bytes
inside a msgpack extension type.
"""

from __future__ import annotations

import struct
import typing
from typing import Any, Generic, Protocol, TypeVar, overload

import msgspec
import numpy as np

from state.exceptions import StateDecodeError

T = TypeVar("T")

#: Version of the byte layout written by `MsgpackCodec` (first byte of every encoded value).
MSGPACK_CODEC_FORMAT = 1

#: msgpack extension code of a numpy array.
NDARRAY_EXT_CODE = 1

# dtype code (first payload byte of an ndarray extension) <-> little-endian numpy dtype.
_DTYPE_BY_CODE: dict[int, np.dtype[Any]] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("<i8"),
    5: np.dtype("u1"),
    6: np.dtype("?"),
}
_CODE_BY_KIND: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): c for c, dt in _DTYPE_BY_CODE.items()}
_ND_HEADER = struct.Struct("<BB")
_DIM_SIZE = 4  # each dimension: little-endian uint32


class Codec(Protocol[T]):
    """Turns state values into bytes and back; `format_id` names the byte format.

    Stores record `format_id` and refuse to open data written with a different one.
    `decode` raises `StateDecodeError` for bytes it cannot read.
    """

    @property
    def format_id(self) -> str:
        """A short, stable name of the byte format (e.g. "msgpack/1")."""
        ...

    def encode(self, value: T) -> bytes:
        """The bytes of `value`."""
        ...

    def decode(self, data: bytes) -> T:
        """The value encoded in `data`."""
        ...


def _encode_ndarray(array: np.ndarray[Any, Any]) -> msgspec.msgpack.Ext:
    code = _CODE_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        supported = ", ".join(str(dt) for dt in _DTYPE_BY_CODE.values())
        raise TypeError(f"MsgpackCodec cannot encode arrays of dtype {array.dtype}; supported: {supported}")
    if array.ndim > 255:
        raise TypeError(f"MsgpackCodec cannot encode arrays with more than 255 dimensions, got {array.ndim}")
    dtype = _DTYPE_BY_CODE[code]
    header = _ND_HEADER.pack(code, array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
    raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return msgspec.msgpack.Ext(NDARRAY_EXT_CODE, header + raw)


def _decode_ndarray(data: memoryview) -> np.ndarray[Any, Any]:
    if len(data) < _ND_HEADER.size:
        raise StateDecodeError(f"ndarray payload of {len(data)} bytes is shorter than its header")
    code, ndim = _ND_HEADER.unpack_from(data, 0)
    dtype = _DTYPE_BY_CODE.get(code)
    if dtype is None:
        raise StateDecodeError(f"unknown ndarray dtype code {code}, expected one of {sorted(_DTYPE_BY_CODE)}")
    offset = _ND_HEADER.size + ndim * _DIM_SIZE
    if len(data) < offset:
        raise StateDecodeError(f"ndarray payload of {len(data)} bytes is too short for {ndim} dimensions")
    shape: tuple[int, ...] = struct.unpack_from(f"<{ndim}I", data, _ND_HEADER.size)
    count = 1
    for n in shape:
        count *= n
    if len(data) - offset != count * dtype.itemsize:
        raise StateDecodeError(
            f"ndarray of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes, "
            f"found {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape).copy()


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _encode_ndarray(obj)
    if isinstance(obj, np.integer | np.floating | np.bool_):
        return obj.item()
    raise TypeError(f"MsgpackCodec cannot encode objects of type {type(obj).__qualname__}")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == NDARRAY_EXT_CODE:
        return _decode_ndarray(data)
    raise StateDecodeError(f"unknown msgpack extension type {code}, expected {NDARRAY_EXT_CODE} (ndarray)")


def _dec_hook(type_: Any, obj: Any) -> Any:
    if (type_ is np.ndarray or typing.get_origin(type_) is np.ndarray) and isinstance(obj, np.ndarray):
        return obj
    raise ValueError(f"expected {type_!r}, got {type(obj).__name__}")


class MsgpackCodec(Generic[T]):
    """msgpack codec (msgspec) with a one-byte format header and typed decoding.

    `MsgpackCodec(MyStruct)` decodes into `MyStruct` (a msgspec Struct, or any type msgspec can
    decode, including `np.ndarray` fields); `MsgpackCodec()` decodes into plain Python values.
    numpy arrays (float32, float64, int32, int64, uint8, bool; any shape) are carried as raw
    little-endian bytes in a msgpack extension and decode as writable arrays of the same dtype and
    shape; numpy integer, float and bool scalars are encoded as Python numbers. Integers must fit in
    msgpack's range [-2**63, 2**64-1] (else `OverflowError`); other unsupported values raise
    `TypeError`. Encoding is deterministic: equal inputs give equal bytes.
    """

    @overload
    def __init__(self: MsgpackCodec[Any]) -> None: ...

    @overload
    def __init__(self, type_: type[T]) -> None: ...

    def __init__(self, type_: Any = Any) -> None:
        self._type = type_
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(
            type_, ext_hook=_ext_hook, dec_hook=_dec_hook
        )
        self._header = bytes([MSGPACK_CODEC_FORMAT])

    @property
    def format_id(self) -> str:
        """"msgpack/<format version>"."""
        return f"msgpack/{MSGPACK_CODEC_FORMAT}"

    @property
    def value_type(self) -> Any:
        """The type values are decoded into (`typing.Any` for untyped decoding)."""
        return self._type

    def encode(self, value: T) -> bytes:
        """The format byte followed by the msgpack encoding of `value`."""
        return self._header + self._encoder.encode(value)

    def decode(self, data: bytes) -> T:
        """Decode bytes written by `encode`; raises `StateDecodeError` if they are not readable."""
        if not data:
            raise StateDecodeError("empty value: expected at least the one-byte codec header")
        if data[0] != MSGPACK_CODEC_FORMAT:
            raise StateDecodeError(
                f"codec header byte is {data[0]}, expected {MSGPACK_CODEC_FORMAT} (msgpack codec format)"
            )
        try:
            return self._decoder.decode(memoryview(data)[1:])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StateDecodeError(f"msgpack payload is not a valid {self._type_name()}: {exc}") from exc

    def _type_name(self) -> str:
        return getattr(self._type, "__qualname__", repr(self._type))

    def __repr__(self) -> str:
        return f"MsgpackCodec({self._type_name()})"
