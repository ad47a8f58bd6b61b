"""TFRecord framing: walk, check and write the frames of a TFRecord file without TensorFlow.

A TFRecord file is a sequence of ``uint64 length | uint32 masked_crc32c(length) | payload |
uint32 masked_crc32c(payload)`` frames (little-endian). Every length header is checked against its
CRC *and* against the bytes left in the file before anything is allocated, so a damaged or hostile
header (a length of 2**40 with a valid CRC) is reported, naming the record, instead of exhausting
memory (TensorFlow's own reader crashes the process on such a header: read shards through
:func:`scan_headers` first).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from harmonization.clickme.crc32c import masked_crc32c
from harmonization.clickme.errors import ClickMeDataError
from harmonization.files import atomic_write

HEADER_BYTES = 12  # length (8) and its masked CRC (4)
FOOTER_BYTES = 4  # masked CRC of the payload


@dataclass(frozen=True)
class ShardIndex:
    """What a header walk found in one shard.

    ``readable`` records (the first ones, in file order) have sound headers and fit in the file;
    ``count`` is the number of records the file holds or claims to hold; ``error`` describes the
    first damaged record (index ``readable``), or is None; ``offsets`` are the byte offsets of the
    readable records.
    """

    path: str
    count: int
    readable: int
    offsets: tuple[int, ...] = field(repr=False)
    error: str | None = None


def corrupt_payload(index: int, offset: int) -> str:
    """The wording of a record whose payload CRC does not match (``offset``: a byte inside it)."""
    return f"record {index} is corrupt (its data checksum does not match, byte {offset})"


def _header_problem(header: bytes, index: int, offset: int, size: int) -> tuple[int, str | None]:
    """(payload length, problem or None) of the 12 header bytes of the record at ``offset``."""
    if len(header) < HEADER_BYTES:
        return 0, f"record {index} is truncated (header cut at byte {size})"
    length, stored_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != stored_crc:
        return 0, f"record {index} has a corrupt length header at byte {offset} (not a TFRecord file?)"
    left = size - offset - HEADER_BYTES
    if length + FOOTER_BYTES > left:
        return length, (
            f"record {index} is truncated (its header claims {length} bytes, {max(left, 0)} follow it in the file)"
        )
    return length, None


def scan_headers(path: str | os.PathLike) -> ShardIndex:
    """Walk the length headers of a shard (12 bytes read per record) and find the first damage."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    offsets: list[int] = []
    with open(path, "rb") as handle:
        offset = 0
        while offset < size:
            length, problem = _header_problem(handle.read(HEADER_BYTES), len(offsets), offset, size)
            if problem is not None:
                return ShardIndex(path, len(offsets) + 1, len(offsets), tuple(offsets), problem)
            offsets.append(offset)
            handle.seek(length + FOOTER_BYTES, os.SEEK_CUR)
            offset += HEADER_BYTES + length + FOOTER_BYTES
    return ShardIndex(path, len(offsets), len(offsets), tuple(offsets))


def iter_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield the payload of every record of a TFRecord file, checking both CRCs.

    Raises ClickMeDataError "PATH: record I ..." (one line) at the first damaged record.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        index = offset = 0
        while offset < size:
            header = handle.read(HEADER_BYTES)
            length, problem = _header_problem(header, index, offset, size)
            if problem is not None:
                raise ClickMeDataError(f"{path}: {problem}")
            payload = handle.read(length)
            (payload_crc,) = struct.unpack("<I", handle.read(FOOTER_BYTES))
            if masked_crc32c(payload) != payload_crc:
                raise ClickMeDataError(f"{path}: {corrupt_payload(index, offset + HEADER_BYTES)}")
            yield payload
            index += 1
            offset += HEADER_BYTES + length + FOOTER_BYTES


def frame_record(payload: bytes) -> bytes:
    """One TFRecord frame (length, CRCs and payload) holding ``payload``."""
    header = struct.pack("<Q", len(payload))
    return header + struct.pack("<I", masked_crc32c(header)) + payload + struct.pack("<I", masked_crc32c(payload))


def write_records(path: str | os.PathLike, payloads: Iterable[bytes]) -> None:
    """Write payloads as one TFRecord file, atomically (``harmonization.files.atomic_write``)."""
    with atomic_write(path, "wb") as handle:
        for payload in payloads:
            handle.write(frame_record(payload))
