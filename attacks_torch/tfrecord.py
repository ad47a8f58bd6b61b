"""Where the attack side used to keep its TFRecord code: it now lives in :mod:`harmonization.clickme`.

These names are imported from there for the callers not yet switched to it (the sweep's tests and
benchmark); new code imports ``harmonization.clickme`` directly.
"""
from harmonization.clickme.example import encode_example, parse_example
from harmonization.clickme.tfrecord import iter_records, write_records

__all__ = ["encode_example", "iter_records", "parse_example", "write_records"]
