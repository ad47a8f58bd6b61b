"""Read ClickMe shards record by record into numpy, with every check of ``layout``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

from harmonization.clickme.errors import ClickMeDataError, bad_record
from harmonization.clickme.example import parse_example
from harmonization.clickme.layout import ClickMeRecord, RecordProblem, decode_record, problem, unit_range_warning
from harmonization.clickme.tfrecord import iter_records


def iter_clickme(path: str | os.PathLike, num_classes: int | None = None) -> Iterator[ClickMeRecord]:
    """The decoded records of one ClickMe shard (either layout), in file order.

    Raises ClickMeDataError with one line naming the file and record: "PATH: record I is
    truncated/corrupt ..." for damaged framing, "bad ClickMe record: PATH record I: WHAT" for a bad
    record (the TensorFlow reader's wording).
    """
    for index, payload in enumerate(iter_records(path)):
        try:
            yield decode_record(parse_example(payload), num_classes)
        except RecordProblem as error:
            raise ClickMeDataError(bad_record("ClickMe", path, index, str(error))) from None
        except (ClickMeDataError, ValueError):  # a malformed protobuf message
            raise ClickMeDataError(bad_record("ClickMe", path, index, problem("undecodable"))) from None


def warn_if_unit_range(paths: Sequence[str], takes: Sequence[int], logger: logging.Logger) -> None:
    """Log a warning when the first record of every shard with records (``takes``: each shard's
    readable count) looks like [0, 1] data in [0, 255]. A bad first record is left to the reader."""
    brightest = []
    for path, take in zip(paths, takes):
        if take > 0:
            try:
                brightest.append(float(next(iter_clickme(path)).image.max()))
            except ClickMeDataError:  # a bad first record is reported (or skipped) by the reader
                pass
    others = f" and {len(paths) - 1} other shard(s)" if len(paths) > 1 else ""
    warning = unit_range_warning(max(brightest), paths[0] + others) if brightest else None
    if warning is not None:
        logger.warning(warning)
