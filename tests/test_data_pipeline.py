"""load_clickme: batch contract, joint crop/flip, eval crops, diffusion numerics, order, mixing."""

import numpy as np
import pytest

import harmonization  # noqa: F401  (loads triton before TensorFlow: docs/traps.md, "Import order")
import tensorflow as tf
from scipy import ndimage
from skimage.transform import resize as sk_resize

from harmonization.data import diffuse_heatmaps, load_clickme, write_clickme
from harmonization.data.records import encode_imagenet
from harmonization.metrics import gaussian_kernel


def marker_image(size=64):
    """An asymmetric bright L-shaped marker on black (so a flip or a shift is visible)."""
    image = np.zeros((size, size), np.float32)
    image[8:30, 6:12] = 200.0
    image[24:30, 6:26] = 120.0
    return image


def write_raw(tmp_path, images, labels, heatmaps=None, prefix="raw"):
    heatmaps = images if heatmaps is None else heatmaps
    examples = [
        {
            "image": np.repeat(np.asarray(i, np.float32)[..., None], 3, -1) if np.ndim(i) == 2 else i,
            "heatmap": h,
            "label": int(y),
        }
        for i, h, y in zip(images, heatmaps, labels)
    ]
    return write_clickme(examples, tmp_path, layout="stimulus", prefix=prefix)


def collect(dataset):
    batches = list(dataset)
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}


def test_batches_follow_the_data_contract(tmp_path):
    rng = np.random.default_rng(0)
    paths = write_raw(tmp_path, rng.uniform(0, 255, (6, 40, 40)), range(6))
    dataset = load_clickme(paths, split="train", batch_size=4, image_size=24, num_classes=6, seed=0)
    spec = dataset.element_spec
    assert spec["image"].shape.as_list() == [4, 24, 24, 3] and spec["image"].dtype == tf.float32
    assert spec["heatmap"].shape.as_list() == [4, 24, 24, 1] and spec["heatmap"].dtype == tf.float32
    assert spec["label"].shape.as_list() == [4] and spec["label"].dtype == tf.int64
    assert spec["token"].shape.as_list() == [4] and spec["token"].dtype == tf.float32
    batch = next(iter(dataset))
    assert 0.0 <= batch["image"].numpy().min() and batch["image"].numpy().max() <= 255.0
    assert batch["heatmap"].numpy().min() >= 0.0


@pytest.mark.parametrize("layout", ["stimulus", "jpeg"])
def test_random_crop_and_flip_move_image_and_heatmap_together(tmp_path, layout):
    marker = marker_image()
    image = np.repeat(marker[..., None], 3, -1)
    examples = [
        {
            "image": image if layout == "stimulus" else image.astype(np.uint8),
            "heatmap": marker if layout == "stimulus" else marker.astype(np.uint8),
            "label": 0,
        }
    ] * 48
    paths = write_clickme(examples, tmp_path, layout=layout)
    got = collect(
        load_clickme(paths, split="train", batch_size=16, image_size=32, num_classes=1, seed=1, diffuse=False)
    )
    tolerance = 1e-3 if layout == "stimulus" else 12.0  # JPEG: image and map are coded separately
    assert np.abs(got["image"][..., 0] - got["heatmap"][..., 0]).max() <= tolerance
    # The windows really vary (the marker moves and changes scale between samples).
    assert len({round(float(x), 1) for x in got["heatmap"].reshape(48, -1).sum(1)}) > 20


def test_flips_happen_and_are_shared(tmp_path):
    marker = marker_image(32)
    paths = write_raw(tmp_path, [marker] * 32, [0] * 32)
    got = collect(
        load_clickme(
            paths,
            split="train",
            batch_size=32,
            image_size=32,
            num_classes=1,
            seed=2,
            crop_area=(1.0, 1.0),
            diffuse=False,
        )
    )
    flipped = [np.allclose(img[..., 0], marker[:, ::-1], atol=1e-3) for img in got["image"]]
    kept = [np.allclose(img[..., 0], marker, atol=1e-3) for img in got["image"]]
    assert all(f or k for f, k in zip(flipped, kept)) and 4 <= sum(flipped) <= 28
    np.testing.assert_allclose(got["heatmap"][..., 0], got["image"][..., 0], atol=1e-3)


def test_val_split_takes_the_central_0875_crop(tmp_path):
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    heatmaps = rng.uniform(0, 1, (3, 64, 64, 1)).astype(np.float32)
    paths = write_raw(tmp_path, images, range(3), heatmaps)
    got = collect(
        load_clickme(paths, split="val", batch_size=8, image_size=56, num_classes=3, deterministic=True, diffuse=False)
    )
    np.testing.assert_allclose(got["image"], images[:, 4:60, 4:60], atol=1e-3)
    np.testing.assert_allclose(got["heatmap"], heatmaps[:, 4:60, 4:60], atol=1e-5)


def test_test_split_only_resizes(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    paths = write_raw(tmp_path, images, range(2), images[..., :1])
    got = collect(
        load_clickme(paths, split="test", batch_size=8, image_size=32, num_classes=2, deterministic=True, diffuse=False)
    )
    halved = images.reshape(2, 32, 2, 32, 2, 3).mean(axis=(2, 4))  # bilinear 2x down = 2x2 mean
    np.testing.assert_allclose(got["image"], halved, atol=1e-3)


def reference_diffusion(heatmap, size):
    """scipy/skimage version of docs/method.md: bilinear to 64, 10x10 sigma-10 blur (SAME), bilinear back."""
    small = sk_resize(heatmap, (64, 64), order=1, mode="edge", anti_aliasing=False)
    # TensorFlow's SAME padding of an even kernel puts 4 rows before and 5 after: origin -1.
    blurred = ndimage.correlate(small, gaussian_kernel(10, 10.0).astype(np.float64), mode="constant", origin=-1)
    return sk_resize(blurred, size, order=1, mode="edge", anti_aliasing=False)


@pytest.mark.parametrize("shape, size", [((256, 256), (224, 224)), ((32, 32), (32, 32)), ((50, 70), (40, 40))])
def test_diffusion_matches_a_scipy_reference(shape, size):
    heatmap = np.random.default_rng(5).uniform(0, 255, shape)
    got = diffuse_heatmaps(heatmap[None, ..., None].astype(np.float32), size).numpy()[0, ..., 0]
    np.testing.assert_allclose(got, reference_diffusion(heatmap, size), rtol=1e-4, atol=1e-3)


def test_diffusion_keeps_mass_away_from_borders_and_is_applied_by_default(tmp_path):
    heatmap = np.zeros((64, 64), np.float32)
    heatmap[28:36, 28:36] = 255.0
    diffused = diffuse_heatmaps(heatmap[..., None]).numpy()[..., 0]
    assert diffused.shape == (64, 64)
    assert diffused.sum() == pytest.approx(heatmap.sum(), rel=1e-3)  # a sum-1 kernel, no mass at the edges
    clicks = write_clickme(
        [{"image": np.zeros((64, 64, 3), np.uint8), "heatmap": heatmap.astype(np.uint8), "label": 0}],
        tmp_path,
        prefix="clicks",
    )  # the JPEG layout: raw clicks
    read = dict(split="test", batch_size=1, image_size=64, num_classes=1)
    raw = collect(load_clickme(clicks, diffuse=False, **read))["heatmap"]
    got = collect(load_clickme(clicks, **read))["heatmap"]
    np.testing.assert_allclose(got, diffuse_heatmaps(tf.constant(raw)).numpy(), atol=1e-3)
    stimulus = write_raw(tmp_path, [heatmap], [0], [diffused])  # the stimulus layout: already diffused
    np.testing.assert_array_equal(collect(load_clickme(stimulus, **read))["heatmap"][0, ..., 0], diffused)


def test_cardinality_is_known_and_right(tmp_path):
    paths = write_raw(tmp_path, np.zeros((10, 16, 16)), range(10))
    train = load_clickme(paths, split="train", batch_size=4, image_size=16, num_classes=10, seed=0)
    val = load_clickme(paths, split="val", batch_size=4, image_size=16, num_classes=10)
    assert train.cardinality().numpy() == 2 and len(list(train)) == 2
    assert val.cardinality().numpy() == 3 and len(list(val)) == 3
    forever = load_clickme(paths, split="train", batch_size=4, image_size=16, num_classes=10, repeat=True)
    assert forever.cardinality().numpy() == tf.data.INFINITE_CARDINALITY


def test_order_is_reproducible_with_a_seed_and_file_order_for_eval(tmp_path):
    rng = np.random.default_rng(6)
    paths = write_raw(tmp_path, rng.uniform(0, 255, (24, 16, 16)), range(24))
    paths = (
        write_clickme(
            [{"image": np.zeros((16, 16, 3)), "heatmap": np.zeros((16, 16)), "label": 24 + i} for i in range(6)],
            tmp_path,
            prefix="second",
        )
        + paths
    )

    def train(seed):
        return collect(
            load_clickme(
                paths, split="train", batch_size=6, image_size=16, num_classes=30, deterministic=True, seed=seed
            )
        )

    first, again, other = train(7), train(7), train(8)
    np.testing.assert_array_equal(first["label"], again["label"])
    np.testing.assert_array_equal(first["image"], again["image"])
    assert first["label"].tolist() != other["label"].tolist()
    assert sorted(first["label"].tolist()) == list(range(30))
    val = collect(load_clickme(paths, split="test", batch_size=7, image_size=16, num_classes=30, deterministic=True))
    assert val["label"].tolist() == list(range(24, 30)) + list(range(24))  # sorted shard names, record order


def write_imagenet_slim(path, labels, size=48):
    """TF-slim ImageNet records: image/encoded + 1-based image/class/label."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for label in labels:
            image = tf.io.encode_jpeg(np.full((size, size, 3), 90, np.uint8)).numpy()
            feature = {
                "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label + 1])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_mixing_with_imagenet_style_shards(tmp_path):
    clickme = write_raw(tmp_path, np.full((20, 32, 32), 200.0), [5] * 20)
    write_imagenet_slim(tmp_path / "slim.tfrecords", [1, 2, 3] * 100)
    with tf.io.TFRecordWriter(str(tmp_path / "plain.tfrecords")) as writer:
        for _ in range(100):
            writer.write(encode_imagenet(np.full((40, 40, 3), 60, np.uint8), 4))
    got = collect(
        load_clickme(
            clickme,
            split="train",
            batch_size=50,
            image_size=24,
            num_classes=6,
            seed=0,
            mix_with=[str(tmp_path / "slim.tfrecords"), str(tmp_path / "plain.tfrecords")],
            clickme_fraction=0.25,
            drop_remainder=False,
        )
    )
    imagenet = got["token"] == 0.0
    assert imagenet.sum() == 400  # one pass over the ImageNet-style shards is the epoch
    assert abs((~imagenet).sum() / len(imagenet) - 0.25) < 0.06  # the ClickMe share; it repeats as needed
    assert set(got["label"][imagenet].tolist()) == {1, 2, 3, 4} and set(got["label"][~imagenet]) == {5}
    assert np.all(got["heatmap"][imagenet] == 0.0) and np.all(got["heatmap"][~imagenet].max(axis=(1, 2, 3)) > 0)
    assert set(np.unique(got["token"])) == {0.0, 1.0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="bogus"), "split must be one of"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(crop_area=(0.5, 0.2)), "crop_area"),
        (dict(mix_with="x", clickme_fraction=1.0), "clickme_fraction must lie in"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    paths = write_raw(tmp_path, np.zeros((1, 16, 16)), [0])
    with pytest.raises(ValueError, match=message):
        load_clickme(paths, num_classes=1, **kwargs)
