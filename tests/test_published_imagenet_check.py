"""ImageNet check: top-1 / top-5 on class folders and TFRecords built here, and the zoo listing."""

from __future__ import annotations

import numpy as np
import pytest

from builders import clickme_arrays  # noqa: F401  (loads harmonization before TensorFlow)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from harmonization.cli.zoo import format_check, format_zoo  # noqa: E402
from harmonization.imagenet_check import ImageNetDataError, top_k_accuracy, validation_batches  # noqa: E402
from harmonization.models import PUBLISHED_NAMES  # noqa: E402

# class folders in sorted order: red, green, blue; the last "blue" image is green (a miss)
COLOURS = {"n01_red": [(220, 20, 20)] * 2, "n02_green": [(20, 220, 20)] * 2, "n03_blue": [(20, 20, 220), (20, 220, 20)]}


def channel_mean_model(size: int = 32) -> keras.Model:
    """Logits = the mean of each colour channel: class = the dominant colour."""
    pixels = keras.Input((size, size, 3))
    head = keras.layers.Dense(3, kernel_initializer="identity", bias_initializer="zeros")
    return keras.Model(pixels, head(keras.layers.GlobalAveragePooling2D()(pixels)))


def jpeg(colour, height=40, width=30) -> bytes:
    image = np.full((height, width, 3), colour, np.uint8)
    return tf.io.encode_jpeg(image, quality=95).numpy()


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet_val")
    for folder, colours in COLOURS.items():
        (root / folder).mkdir()
        for index, colour in enumerate(colours):
            (root / folder / f"ILSVRC2012_val_{index:08d}.JPEG").write_bytes(jpeg(colour))
    return root


def test_top1_and_top5_on_class_folders(class_folders):
    result = top_k_accuracy(channel_mean_model(), validation_batches(str(class_folders), 3, 32, batch_size=4))
    assert result == {"images": 6, "top1": pytest.approx(500 / 6), "top5": 100.0}
    limited = top_k_accuracy(channel_mean_model(), validation_batches(str(class_folders), 3, 32, 4), limit=4)
    assert limited["images"] == 4 and limited["top1"] == 100.0


def test_tfrecord_shards_give_the_same_figures(class_folders, tmp_path):
    path = tmp_path / "validation-00000-of-00001.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:  # the slim layout: 1-based labels
        for label, colours in enumerate(COLOURS.values()):
            for colour in colours:
                feature = {
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg(colour)])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label + 1])),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    result = top_k_accuracy(channel_mean_model(), validation_batches(str(tmp_path), 3, 32, batch_size=4))
    assert result == {"images": 6, "top1": pytest.approx(500 / 6), "top5": 100.0}


def test_unusable_data_is_named_in_one_line(class_folders, tmp_path):
    with pytest.raises(ImageNetDataError, match=r"3 class folders, the model has 1000 classes"):
        validation_batches(str(class_folders), 1000)
    broken = tmp_path / "broken"
    (broken / "n01").mkdir(parents=True)
    (broken / "n01" / "x.JPEG").write_text("not an image")
    with pytest.raises(ImageNetDataError) as caught:
        top_k_accuracy(channel_mean_model(), validation_batches(str(broken), 1, 32))
    assert "x.JPEG" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ImageNetDataError, match="neither class folders nor TFRecord"):
        validation_batches(str(tmp_path / "nothing-*"), 3)


def test_zoo_listing_and_check_summary():
    listing = format_zoo()
    for name in PUBLISHED_NAMES:
        assert name in listing
    assert "https://storage.googleapis.com/serrelab/prj_harmonization/models/vgg16_harmonized.h5" in listing
    assert "levit_small_harmonized.h5" in listing and "69.3 / 62" in listing
    summary = format_check(
        {
            "model": "vgg16",
            "file": "v.h5",
            "images": 50000,
            "top1": 69.0,
            "top5": 89.0,
            "reported_top1": 69.3,
            "top1_minus_reported": -0.3,
        }
    )
    assert "top-1 69.00%" in summary and "reported 69.3" in summary and "-0.3" in summary
