"""MsgpackCodec: round trips, numpy arrays as raw little-endian bytes, typed decoding, damaged bytes."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from state import MsgpackCodec, StateDecodeError
from state.codec import MSGPACK_CODEC_FORMAT, NDARRAY_EXT_CODE


class Session(msgspec.Struct):
    """A typed value: session items and a recurrent hidden vector."""

    items: list[str]
    hidden: np.ndarray
    score: float = 0.0


def test_plain_values_round_trip() -> None:
    codec = MsgpackCodec()
    for value in (None, 0, -(2**63), 2**64 - 1, 1.5, "x", b"\x00\xff", [1, [2]], {"a": {"b": [None, True]}}):
        assert codec.decode(codec.encode(value)) == value


def test_first_byte_is_the_codec_format_version() -> None:
    codec = MsgpackCodec()
    data = codec.encode({"a": 1})
    assert data[0] == MSGPACK_CODEC_FORMAT
    assert codec.format_id == f"msgpack/{MSGPACK_CODEC_FORMAT}"
    assert msgspec.msgpack.decode(data[1:]) == {"a": 1}


def test_float32_arrays_travel_as_raw_little_endian_bytes() -> None:
    codec = MsgpackCodec()
    array = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    data = codec.encode(array)
    assert array.astype("<f4").tobytes() in data  # no per-element msgpack floats
    ext = msgspec.msgpack.decode(data[1:], ext_hook=lambda code, payload: (code, bytes(payload)))
    assert ext[0] == NDARRAY_EXT_CODE
    back = codec.decode(data)
    assert back.dtype == np.float32 and back.shape == (3, 4)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_big_endian_and_non_contiguous_arrays_are_normalised() -> None:
    codec = MsgpackCodec()
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    strided = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    for array in (big, strided, np.array(3.5, dtype=np.float32), np.zeros((0, 3), np.float32)):
        back = codec.decode(codec.encode(array))
        assert back.shape == array.shape
        np.testing.assert_array_equal(back, array)


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_supported_arrays_round_trip_exactly(array: np.ndarray[Any, Any]) -> None:
    codec = MsgpackCodec()
    back = codec.decode(codec.encode({"x": array}))["x"]
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_numpy_scalars_become_python_numbers() -> None:
    codec = MsgpackCodec()
    assert codec.decode(codec.encode({"f": np.float32(0.5), "i": np.int64(7)})) == {"f": 0.5, "i": 7}


def test_typed_decoding_into_a_struct() -> None:
    codec = MsgpackCodec(Session)
    value = Session(["a", "b"], np.ones(8, np.float32), 0.25)
    back = codec.decode(codec.encode(value))
    assert isinstance(back, Session)
    assert back.items == ["a", "b"] and back.score == 0.25
    np.testing.assert_array_equal(back.hidden, value.hidden)


def test_encoding_is_deterministic() -> None:
    codec = MsgpackCodec(Session)
    a = Session(["x"], np.linspace(0, 1, 5, dtype=np.float32))
    b = Session(["x"], np.linspace(0, 1, 5, dtype=np.float32))
    assert codec.encode(a) == codec.encode(b)


def test_unsupported_values_are_refused_not_pickled() -> None:
    codec = MsgpackCodec()
    for value in (object(), np.array([1 + 2j]), np.array(["text"]), np.datetime64("2026-01-01")):
        with pytest.raises(TypeError):
            codec.encode(value)


def _ext(code: int, payload: bytes) -> bytes:
    return b"\x01" + msgspec.msgpack.encode(msgspec.msgpack.Ext(code, payload))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty value"),
        (b"\x02\x80", "header byte is 2, expected 1"),
        (b"\x01\xc1", "not a valid"),
        (b"\x01\x92\x01", "not a valid"),  # truncated array
        (_ext(9, b""), "unknown msgpack extension type 9"),
        (_ext(1, b"\x01\x01\x05\x00\x00\x00"), "needs 20 bytes"),  # float32[5] without its data
        (_ext(1, b"\x63\x00"), "unknown ndarray dtype"),
        (_ext(1, b"\x01"), "shorter than its header"),
    ],
)
def test_damaged_bytes_raise_state_decode_error(data: bytes, message: str) -> None:
    with pytest.raises(StateDecodeError, match=message):
        MsgpackCodec().decode(data)


def test_schema_mismatch_raises_state_decode_error() -> None:
    data = MsgpackCodec().encode({"items": "not a list", "hidden": 3})
    with pytest.raises(StateDecodeError, match="Session"):
        MsgpackCodec(Session).decode(data)
