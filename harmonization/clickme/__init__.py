"""The ClickMe data format, without TensorFlow or torch: TFRecord framing and CRC-32C,
``tf.train.Example`` records, the two published layouts and the checks of every record, shard
path resolution, the heatmap diffusion constants, and a shard writer (numpy and Pillow).

The training reader (``harmonization.data``, tf.data) and the attack reader
(``attacks_torch.stimuli``, torch) are adapters over this package. Importing it loads neither
TensorFlow nor torch.
"""

from harmonization.clickme.errors import ClickMeDataError, bad_record
from harmonization.clickme.example import encode_example, parse_example
from harmonization.clickme.layout import LAYOUTS, ClickMeRecord, decode_record, unit_range_warning
from harmonization.clickme.paths import ShardPaths, resolve_shards
from harmonization.clickme.reader import iter_clickme
from harmonization.clickme.tfrecord import ShardIndex, frame_record, iter_records, scan_headers, write_records
from harmonization.clickme.writer import encode_clickme, encode_imagenet, write_clickme, write_imagenet, write_shards

__all__ = [
    "LAYOUTS",
    "ClickMeDataError",
    "ClickMeRecord",
    "ShardIndex",
    "ShardPaths",
    "bad_record",
    "decode_record",
    "encode_clickme",
    "encode_example",
    "encode_imagenet",
    "frame_record",
    "iter_clickme",
    "iter_records",
    "parse_example",
    "resolve_shards",
    "scan_headers",
    "unit_range_warning",
    "write_clickme",
    "write_imagenet",
    "write_records",
    "write_shards",
]
