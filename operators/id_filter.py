"""A Bloom filter over 8-byte id digests: the idempotency window's answer to "was this id never seen?" without
reading the key's sealed chunks (see `operators.idempotency`).

Bits: `FILTER_BITS_PER_ID` per id of capacity; probes: `FILTER_PROBES`, positions by double hashing of the
digest's two 32-bit halves (the digest is already a uniform hash). At full capacity about 0.8 % of the lookups
of a new id answer "maybe"; none of an added id answers "no". Stored as: format byte, probes, capacity,
ids added (big-endian), then the bits.
"""

from __future__ import annotations

import struct

#: Filter bits per id of capacity, and probes per id (about 0.8 % false "maybe"s when full).
FILTER_BITS_PER_ID = 10
FILTER_PROBES = 7
#: Bytes per digest.
DIGEST_BYTES = 8
_HEADER = struct.Struct(">BBII")
_FORMAT = 1
_LOW32 = 0xFFFFFFFF


class IdFilter:
    """A Bloom filter over digests: `may_hold` never answers False for a digest added (double hashing of the
    digest's two 32-bit halves; the digest is already a uniform hash)."""

    __slots__ = ("added", "bits", "capacity", "probes", "size")

    def __init__(self, capacity: int, probes: int = FILTER_PROBES, bits: bytearray | None = None,
                 added: int = 0) -> None:
        self.capacity = capacity
        self.probes = probes
        self.bits = bits if bits is not None else bytearray((capacity * FILTER_BITS_PER_ID + 7) // 8)
        self.size = len(self.bits) * 8
        self.added = added

    @classmethod
    def decode(cls, raw: bytes, where: str = "ids/filter") -> IdFilter:
        """A filter from its stored bytes (a clear error naming `where` if they are not one)."""
        if len(raw) <= _HEADER.size or raw[0] != _FORMAT:
            raise ValueError(f"side entry {where!r} of {len(raw)} bytes is not an id filter of format {_FORMAT}")
        _, probes, capacity, added = _HEADER.unpack_from(raw)
        return cls(capacity, probes, bytearray(raw[_HEADER.size:]), added)

    def encode(self) -> bytes:
        """The side entry."""
        return _HEADER.pack(_FORMAT, self.probes, self.capacity, self.added) + self.bits

    def add(self, digests: bytes) -> None:
        """Add every 8-byte digest of `digests`."""
        bits, size = self.bits, self.size
        for at in range(0, len(digests), DIGEST_BYTES):
            value = int.from_bytes(digests[at:at + DIGEST_BYTES], "big")
            position, step = value >> 32, (value & _LOW32) | 1
            for _ in range(self.probes):
                bit = position % size
                bits[bit >> 3] |= 1 << (bit & 7)
                position += step
        self.added += len(digests) // DIGEST_BYTES

    def may_hold(self, value: bytes) -> bool:
        """False only if the digest `value` was never added."""
        bits, size = self.bits, self.size
        number = int.from_bytes(value, "big")
        position, step = number >> 32, (number & _LOW32) | 1
        for _ in range(self.probes):
            bit = position % size
            if not bits[bit >> 3] & (1 << (bit & 7)):
                return False
            position += step
        return True
