"""The framework-neutral ClickMe input core and its torch adapter, against tf.data's reader."""

import numpy as np
import pytest

import harmonization  # noqa: F401  (loads triton before TensorFlow: docs/traps.md, "Import order")
import tensorflow as tf
from torch.utils.data import DataLoader

from harmonization.clickme import ClickMeDataError, write_clickme, write_imagenet
from harmonization.data import diffuse_heatmaps, load_clickme
from harmonization.inputs import ClickMeInputs, transforms
from harmonization.inputs.torch_data import ClickMeBatches, clickme_loader

JPEG_ROUNDING = 1e-3  # Pillow and TensorFlow run the same libjpeg DCT: equal up to float32 resizing


def examples(n, size=40, seed=0, labels=None):
    """Random images whose map is a bright square (raw clicks), labels 0..n-1 unless given."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.uniform(0, 255, (size + i % 3, size, 3)).astype(np.uint8)
        heatmap = np.zeros(image.shape[:2], np.uint8)
        top, left = rng.integers(0, size // 2, 2)
        heatmap[top : top + size // 3, left : left + size // 4] = 255
        out.append({"image": image, "heatmap": heatmap, "label": i if labels is None else labels[i]})
    return out


def square(records):
    return [{**r, "image": r["image"][:40, :40].astype(np.float32), "heatmap": r["heatmap"][:40, :40]} for r in records]


def write(tmp_path, layout, n=10, **kwargs):
    records = examples(n, **kwargs)
    return write_clickme(
        records if layout == "jpeg" else square(records), tmp_path / layout, shard_size=4, layout=layout
    )


def tf_batches(dataset):
    return [{k: v.numpy() for k, v in b.items()} for b in dataset]


def assert_batches_equal(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a["label"], b["label"])
        np.testing.assert_array_equal(a["token"], b["token"])
        np.testing.assert_allclose(a["image"], b["image"], atol=JPEG_ROUNDING, rtol=0)
        scale = max(float(np.abs(b["heatmap"]).max()), 1.0)
        np.testing.assert_allclose(a["heatmap"] / scale, b["heatmap"] / scale, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size_in, size_out", [((37, 50), 24), ((256, 256), 224), ((20, 31), 64), ((64, 64), 16)])
@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_resizes_match_tensorflow(size_in, size_out, method):
    array = np.random.default_rng(1).uniform(0, 255, (*size_in, 3)).astype(np.float32)
    expected = tf.image.resize(array, (size_out, size_out), method=method).numpy()
    np.testing.assert_allclose(transforms.resize(array, (size_out, size_out), method), expected, atol=2e-4, rtol=0)


def test_diffusion_matches_tensorflow():
    clicks = np.random.default_rng(2).uniform(0, 255, (48, 40, 1)).astype(np.float32)
    expected = diffuse_heatmaps(clicks, (32, 32)).numpy()
    np.testing.assert_allclose(transforms.diffuse(clicks, (32, 32)), expected, atol=1e-5 * expected.max(), rtol=0)


@pytest.mark.parametrize("flip", [False, True])
def test_train_crop_and_flip_match_tensorflow_for_the_same_window(flip):
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (50, 60, 3)).astype(np.float32)
    heatmap = rng.uniform(0, 1, (50, 60, 1)).astype(np.float32)
    top, left, height, width = transforms.window_from_draws(transforms.crop_draws(rng), 50, 60, area_range=(0.2, 0.5))
    got = transforms.crop_resize_flip(image, heatmap, (top, left, height, width), flip, 32)
    for ours, array in zip(got, (image, heatmap)):
        expected = tf.image.resize(array[top : top + height, left : left + width], (32, 32)).numpy()
        np.testing.assert_allclose(ours, expected[:, ::-1] if flip else expected, atol=2e-4, rtol=0)


def test_the_graph_turns_the_core_draws_into_the_same_windows():
    """tf.data's crop (``augment._window``) and the core's, from the same draws, for 1000 draws
    over sizes and area ranges that make some attempts miss."""
    from harmonization.data.augment import _window

    rng, window = np.random.default_rng(6), tf.function(_window)
    for k in range(1000):
        height, width = (int(v) for v in rng.integers(1, 300, 2))
        area = (0.08, 1.0) if k % 2 else (0.5, 1.0)
        draws = transforms.crop_draws(rng)
        got = tuple(int(v) for v in window(tf.constant(draws), tf.constant([height, width, 3]), area, (3 / 4, 4 / 3)))
        assert got == transforms.window_from_draws(draws, height, width, area), (height, width, draws)


@pytest.mark.parametrize("layout", ["jpeg", "stimulus"])
@pytest.mark.parametrize("split", ["val", "test"])
def test_eval_batches_equal_tf_data(tmp_path, layout, split):
    paths = write(tmp_path, layout)
    read = dict(split=split, batch_size=4, image_size=24, num_classes=10)
    theirs = tf_batches(load_clickme(paths, deterministic=True, **read))
    ours = [{k: v.numpy() for k, v in b.items()} for b in clickme_loader(ClickMeInputs(paths, **read), num_workers=0)]
    assert_batches_equal(ours, theirs)


@pytest.mark.parametrize("layout", ["jpeg", "stimulus"])
def test_mixed_examples_equal_tf_data_record_by_record(tmp_path, layout):
    """With ImageNet mixing on "val" each example (token, zero map, centre crop) is tf.data's for
    the same record (whole batches: ``test_train_batches_equal_tf_data_with_mixing``)."""
    clickme = write(tmp_path, layout, n=4)
    rng = np.random.default_rng(4)
    mix = write_imagenet(
        rng.uniform(0, 255, (12, 44, 36, 3)).astype(np.uint8), range(4, 16), tmp_path / "mix", shard_size=5
    )
    read = dict(split="val", batch_size=4, image_size=24, num_classes=16, mix_with=mix, clickme_fraction=0.3)

    def by_label(batches):
        found = {}
        for b in batches:
            for i, label in enumerate(b["label"]):
                found.setdefault(int(label), {k: v[i : i + 1] for k, v in b.items()})
        return found

    theirs = by_label(tf_batches(load_clickme(clickme, deterministic=True, seed=0, **read)))
    ours = by_label(b for b in ClickMeBatches(ClickMeInputs(clickme, seed=0, **read)))
    ours = {k: {n: np.asarray(v) for n, v in b.items()} for k, b in ours.items()}
    assert set(range(4, 16)) <= set(ours) and set(range(4, 16)) <= set(theirs)
    for label in set(ours) & set(theirs):
        assert_batches_equal([ours[label]], [theirs[label]])
    assert all(ours[label]["token"][0] == 0.0 and not ours[label]["heatmap"].any() for label in range(4, 16))


@pytest.mark.parametrize("layout, mixup", [("jpeg", 0.4), ("stimulus", 0.4), ("jpeg", None)])
def test_train_batches_equal_tf_data_with_mixing(tmp_path, layout, mixup):
    """The train split with ImageNet mixing (and mixup): tf.data and torch read the same records in
    the same order with the same crops, flips and mixup, two epochs running."""
    clickme = write(tmp_path, layout, n=6)
    mix = write_imagenet(
        np.random.default_rng(7).uniform(0, 255, (10, 44, 36, 3)).astype(np.uint8),
        range(6, 16),
        tmp_path / "mix",
        shard_size=4,
    )
    read = dict(
        split="train",
        batch_size=4,
        image_size=24,
        num_classes=16,
        mix_with=mix,
        clickme_fraction=0.4,
        seed=3,
        crop_area=(0.3, 1.0),
        mixup=mixup,
    )
    dataset = load_clickme(clickme, deterministic=True, **read)
    torch_epochs = ClickMeBatches(ClickMeInputs(clickme, **read))
    for epoch in range(2):
        torch_epochs.set_epoch(epoch)
        ours = [{k: v.numpy() for k, v in b.items()} for b in torch_epochs]
        theirs = tf_batches(dataset)  # each iteration is the next epoch
        assert_batches_equal(ours, theirs)
        assert len(ours) >= 4 and any((b["token"] == 0).any() for b in ours)
    streamed = tf_batches(load_clickme(clickme, deterministic=True, repeat=True, **read).take(len(ours) + 2))
    assert_batches_equal(streamed[:2], tf_batches(load_clickme(clickme, deterministic=True, **read))[:2])


def test_mixing_ends_with_the_imagenet_shards_and_keeps_the_share(tmp_path):
    clickme = write(tmp_path, "stimulus", n=5)
    mix = write_imagenet(np.full((400, 20, 20, 3), 60, np.uint8), [7] * 400, tmp_path / "mix", shard_size=100)
    inputs = ClickMeInputs(
        clickme, split="train", batch_size=8, image_size=16, num_classes=10, seed=3, mix_with=mix, clickme_fraction=0.25
    )
    plan = inputs.plan(0)
    assert np.count_nonzero(plan.token == 0) == 400 and sorted(plan.record[plan.token == 0]) == list(range(400))
    assert plan.token[-1] == 0 and abs(plan.token.mean() - 0.25) < 0.06
    assert set(plan.record[plan.token == 1]) == set(range(5))  # ClickMe repeats as needed


def train_batches(paths, world_size=1, rank=0, workers=0, batch_size=4, epoch=0, **kwargs):
    inputs = ClickMeInputs(paths, split="train", batch_size=batch_size, image_size=16, num_classes=12, seed=5, **kwargs)
    dataset = ClickMeBatches(inputs, rank=rank, world_size=world_size)
    dataset.set_epoch(epoch)
    return [{k: v.numpy() for k, v in b.items()} for b in DataLoader(dataset, batch_size=None, num_workers=workers)]


def test_training_batches_are_deterministic_per_seed_and_epoch(tmp_path):
    paths = write(tmp_path, "jpeg", n=12)
    first = train_batches(paths)
    assert_batches_equal(train_batches(paths, workers=2), first)  # DataLoader workers keep the order
    later = train_batches(paths, epoch=1)
    assert not np.array_equal(first[0]["label"], later[0]["label"])  # each epoch reshuffles
    assert sorted(np.concatenate([b["label"] for b in first]).tolist()) == list(range(12))


def test_processes_together_give_the_global_batch(tmp_path):
    paths = write(tmp_path, "jpeg", n=12)
    whole = train_batches(paths, batch_size=4)
    shares = [train_batches(paths, world_size=2, rank=r, batch_size=2) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for k, batch in enumerate(whole):
        joined = {name: np.concatenate([shares[0][k][name], shares[1][k][name]]) for name in batch}
        assert_batches_equal([joined], [batch])


@pytest.mark.parametrize("layout", ["stimulus", "jpeg"])
def test_train_crop_and_flip_move_image_and_map_together(tmp_path, layout):
    marker = np.zeros((64, 64), np.float32)
    marker[8:30, 6:12], marker[24:30, 6:26] = 200.0, 120.0
    image = np.repeat(marker[..., None], 3, -1)
    records = [
        {
            "image": image if layout == "stimulus" else image.astype(np.uint8),
            "heatmap": marker if layout == "stimulus" else marker.astype(np.uint8),
            "label": 0,
        }
    ] * 24
    paths = write_clickme(records, tmp_path, layout=layout)
    got = np.concatenate(
        [
            b["image"][..., :1] - b["heatmap"]
            for b in ClickMeBatches(
                ClickMeInputs(paths, batch_size=8, image_size=32, num_classes=1, diffuse=False, seed=1)
            )
        ]
    )
    assert np.abs(got).max() <= (1e-3 if layout == "stimulus" else 12.0)  # JPEG codes image and map apart
    batch = next(
        iter(ClickMeBatches(ClickMeInputs(paths, batch_size=24, image_size=32, num_classes=1, diffuse=False, seed=1)))
    )
    columns = batch["heatmap"][..., 0].sum(dim=1).argmax(dim=1)
    assert len(set(columns.tolist())) > 3  # the windows and flips vary


def test_mixup_mixes_images_maps_and_labels_alike(tmp_path):
    paths = write(tmp_path, "stimulus", n=8)
    batch = train_batches(paths, batch_size=8, mixup=0.4)[0]
    assert batch["label"].shape == (8, 12) and np.allclose(batch["label"].sum(1), 1.0)
    assert set(np.unique(batch["token"])) <= {1.0}
    assert batch["image"].dtype == np.float32 and (batch["label"].max(1) < 1).any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="bogus"), "split must be one of"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(crop_area=(0.5, 0.2)), "crop_area"),
        (dict(mixup=0.0), "mixup alpha must be positive"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    paths = write(tmp_path, "stimulus", n=1)
    with pytest.raises(ValueError, match=message):
        ClickMeInputs(paths, num_classes=1, **kwargs)


def test_a_bad_record_is_named(tmp_path):
    paths = write(tmp_path, "jpeg", n=3)
    with pytest.raises(
        ClickMeDataError,
        match=r"bad ClickMe record: .*-00000-of-00001.tfrecords record 2: "
        r"label 2 is outside \[0, 2\)",
    ):
        list(ClickMeBatches(ClickMeInputs(paths, split="test", batch_size=3, image_size=16, num_classes=2)))


def test_a_corrupt_record_is_named_and_check_data_false_skips_the_checksum(tmp_path):
    (path,) = write(tmp_path, "stimulus", n=2, seed=6)
    data = bytearray(open(path, "rb").read())
    length = int.from_bytes(data[:8], "little")
    data[12 + length] ^= 0xFF  # record 0's stored data checksum (its payload is intact)
    open(path, "wb").write(bytes(data))
    read = dict(split="test", batch_size=2, image_size=16, num_classes=2)
    with pytest.raises(ClickMeDataError, match=r"-00000-of-00001.tfrecords: record 0 is corrupt"):
        list(ClickMeBatches(ClickMeInputs(path, **read)))
    (batch,) = ClickMeBatches(ClickMeInputs(path, check_data=False, **read))
    assert batch["label"].tolist() == [0, 1]


def test_shards_without_records_are_refused_in_one_line(tmp_path):
    paths = write(tmp_path, "stimulus", n=1)
    (tmp_path / "empty.tfrecords").write_bytes(b"")
    with pytest.raises(ClickMeDataError, match=r"empty.tfrecords: the shards hold no records"):
        ClickMeInputs(paths, num_classes=2, mix_with=str(tmp_path / "empty.tfrecords"))


def test_images_stored_in_unit_range_are_warned_about_as_by_tf_data(tmp_path, caplog):
    import logging

    unit = [{"image": np.full((16, 16, 3), 0.8, np.float32), "heatmap": np.ones((16, 16), np.float32), "label": 0}]
    (path,) = write_clickme(unit, tmp_path, layout="stimulus", prefix="unit")
    with caplog.at_level(logging.WARNING, logger="harmonization.inputs"):
        ClickMeInputs(path, "test", batch_size=1, image_size=16, num_classes=4)
    assert f"{path}: the brightest pixel is 0.8: these images look like [0, 1] data" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="harmonization.inputs"):
        ClickMeInputs(write(tmp_path / "good", "stimulus"), "test", batch_size=1, image_size=16, num_classes=4)
    assert "look like [0, 1]" not in caplog.text


def test_the_keras_training_stream_crosses_epochs_and_resumes_at_any_global_batch(tmp_path):
    from harmonization.inputs.keras_data import EpochBatches, TrainingBatches

    inputs = ClickMeInputs(
        write(tmp_path, "stimulus", n=10), "train", batch_size=3, image_size=16, num_classes=10, seed=5
    )  # 3 whole batches per epoch, one example dropped
    expected = [inputs.batch(inputs.plan(epoch), epoch, index) for epoch in range(3) for index in range(3)]
    assert TrainingBatches(inputs).num_batches is None
    for start in (0, 2, 4):
        stream = TrainingBatches(inputs, start=start, workers=1)
        for index, batch in enumerate(expected[start:]):
            ours = stream[index]
            for name in batch:
                np.testing.assert_array_equal(ours[name], batch[name], err_msg=f"{start} {index} {name}")
    assert not np.array_equal(expected[0]["label"], expected[3]["label"]) or not np.array_equal(
        expected[0]["image"], expected[3]["image"]
    )  # each epoch is drawn anew
    epoch = EpochBatches(
        ClickMeInputs(write(tmp_path / "val", "stimulus", n=10), "test", batch_size=4, image_size=16, num_classes=10)
    )
    assert len(epoch) == 3 and [len(b["label"]) for b in epoch] == [4, 4, 2] == [len(b["label"]) for b in epoch]
    with pytest.raises(IndexError):
        epoch[3]


def test_repeated_epochs_come_in_order_whatever_the_workers(tmp_path):
    """3 batches per epoch over 2 DataLoader workers: the stream still runs epoch 0, then epoch 1, in order."""
    inputs = ClickMeInputs(
        write(tmp_path, "jpeg", n=12), split="train", batch_size=4, image_size=16, num_classes=12, seed=5
    )
    expected = [inputs.batch(inputs.plan(epoch), epoch, index) for epoch in range(3) for index in range(3)]
    for workers in (0, 2):
        loader = iter(DataLoader(ClickMeBatches(inputs, repeat=True), batch_size=None, num_workers=workers))
        ours = [{k: v.numpy() for k, v in next(loader).items()} for _ in expected]
        assert_batches_equal(ours, expected)
