"""ClickMe and ImageNet-style shard writers: those of :mod:`harmonization.clickme.writer` (numpy and
Pillow, no TensorFlow), under the names this package has always offered."""
from harmonization.clickme.writer import write_clickme, write_imagenet

__all__ = ["write_clickme", "write_imagenet"]
