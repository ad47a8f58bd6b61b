"""Read ClickMe shards record by record into numpy, with every check of ``layout``."""
from __future__ import annotations

import os
from collections.abc import Iterator

from harmonization.clickme.errors import ClickMeDataError, bad_record
from harmonization.clickme.example import parse_example
from harmonization.clickme.layout import ClickMeRecord, RecordProblem, decode_record, problem
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
