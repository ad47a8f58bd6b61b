"""CRC-32C (Castagnoli), the checksum of TFRecord framing, and TFRecord's masked form of it.

Short inputs (the 8-byte length headers) go through a byte table in Python. Large payloads are
computed with numpy: the payload is cut into equal chunks whose CRCs advance in parallel, then
combined with the GF(2) operators that append zeros.
"""

from __future__ import annotations

import functools

import numpy as np

_POLY = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8
_VECTOR_THRESHOLD = 2048  # payloads at least this long take the numpy path


def _byte_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in _TABLE]
_BITS = ((np.arange(256, dtype=np.uint32)[:, None] >> np.arange(8, dtype=np.uint32)) & 1).astype(bool)


def _crc_raw_python(data: bytes | memoryview, state: int = 0) -> int:
    table = _TABLE_LIST
    for byte in bytes(data):
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


class _Operator:
    """A linear map of the 32-bit CRC state over GF(2), applied through four byte tables."""

    def __init__(self, columns: np.ndarray):
        self.columns = columns.astype(np.uint32)  # columns[i] = image of the state 1 << i
        self.tables = [
            np.bitwise_xor.reduce(np.where(_BITS, self.columns[8 * j : 8 * j + 8], 0), axis=1).astype(np.uint32)
            for j in range(4)
        ]

    def __call__(self, state: np.ndarray) -> np.ndarray:
        t0, t1, t2, t3 = self.tables
        return t0[state & 0xFF] ^ t1[(state >> 8) & 0xFF] ^ t2[(state >> 16) & 0xFF] ^ t3[state >> 24]

    def then(self, other: _Operator) -> _Operator:
        """The operator applying ``self`` first, then ``other``."""
        return _Operator(other(self.columns))


@functools.lru_cache(maxsize=256)
def _zeros_operator(n_bytes: int) -> _Operator:
    """The map of the raw CRC state through ``n_bytes`` zero bytes (exponentiation by squaring)."""
    basis = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    step = _Operator(_TABLE[basis & 0xFF] ^ (basis >> 8))
    result = None
    while n_bytes:
        if n_bytes & 1:
            result = step if result is None else result.then(step)
        n_bytes >>= 1
        if n_bytes:
            step = step.then(step)
    return result if result is not None else _Operator(basis)


def _crc_raw_numpy(data: np.ndarray) -> int:
    """Raw CRC (state starting at 0, no final xor) of a uint8 array, chunked over numpy lanes."""
    n = data.size
    lanes = 1 << max(6, min(13, int(np.log2(max(n, 1))) - 7))  # about 128 bytes per lane: few numpy steps
    chunk = -(-n // lanes)
    padded = np.zeros(lanes * chunk, dtype=np.uint8)
    padded[lanes * chunk - n :] = data  # leading zeros leave a zero raw state unchanged
    columns = np.ascontiguousarray(padded.reshape(lanes, chunk).T)
    state = np.zeros(lanes, dtype=np.uint32)
    for column in columns:
        state = _TABLE[(state ^ column) & 0xFF] ^ (state >> 8)
    length = chunk
    while state.size > 1:
        state = _zeros_operator(length)(state[0::2]) ^ state[1::2]
        length *= 2
    return int(state[0])


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data``, as used by TFRecord framing."""
    view = memoryview(data).cast("B")
    if len(view) < _VECTOR_THRESHOLD:
        return _crc_raw_python(view, 0xFFFFFFFF) ^ 0xFFFFFFFF
    array = np.frombuffer(view, dtype=np.uint8).copy()
    array[:4] ^= 0xFF  # an initial state of ~0 equals complementing the first four bytes
    return _crc_raw_numpy(array) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC-32C: rotate right by 15 bits, add a constant, modulo 2**32."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF
