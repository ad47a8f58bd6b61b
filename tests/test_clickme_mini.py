"""ClickMe-mini: deterministic, instant on re-run, and built so that the shortcut and the object
each carry the class as designed (the cue agrees with the label in ~90% of train images and is
independent of it in "conflict"; the object, which the human map marks, names the class alone)."""

import glob
import os

import numpy as np
import pytest

import harmonization  # noqa: F401  (loads triton before TensorFlow: docs/traps.md, "Import order")
import tensorflow as tf
from builders import object_features, run_python
from sklearn.linear_model import LogisticRegression

from harmonization.data import clickme_mini, diffuse_heatmaps, load_clickme
from harmonization.data.mini import MANIFEST, cue_box

SMALL = dict(train_size=24, val_size=8, conflict_size=8, stimuli_per_class=2, shard_size=10)


def shard_bytes(directory):
    return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(os.path.join(directory, "*")))}


def test_same_seed_same_bytes_another_seed_differs(tmp_path):
    first = clickme_mini(tmp_path / "a", seed=3, **SMALL)
    clickme_mini(tmp_path / "b", seed=3, **SMALL)
    clickme_mini(tmp_path / "c", seed=4, **SMALL)
    a, b, c = (shard_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a if name.endswith(".tfrecords"))
    assert first["num_classes"] == 4 and first["image_size"] == 32
    for split in ("train", "val", "conflict", "stimuli"):
        assert glob.glob(first[split]), split


def test_a_rerun_reuses_a_complete_set_and_new_settings_regenerate(tmp_path):
    clickme_mini(tmp_path, seed=0, **SMALL)
    stamps = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(tmp_path / "*"))}
    clickme_mini(tmp_path, seed=0, **SMALL)
    assert {p: os.stat(p).st_mtime_ns for p in glob.glob(str(tmp_path / "*"))} == stamps
    os.remove(glob.glob(str(tmp_path / "val-*"))[0])  # an incomplete set is rebuilt
    clickme_mini(tmp_path, seed=0, **SMALL)
    assert glob.glob(str(tmp_path / "val-*"))
    changed = clickme_mini(tmp_path, seed=0, **dict(SMALL, train_size=40))
    assert sum(1 for _ in tf.data.TFRecordDataset(sorted(glob.glob(changed["train"])))) == 40
    assert os.path.exists(tmp_path / MANIFEST)


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        clickme_mini(tmp_path, num_classes=9)
    with pytest.raises(ValueError, match="cue_agreement"):
        clickme_mini(tmp_path, cue_agreement=1.5)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The default ClickMe-mini, decoded in file order (the order of cues.npz)."""
    info = clickme_mini(tmp_path_factory.mktemp("mini"), seed=0)
    splits = {}
    for split in ("train", "val", "conflict", "stimuli"):
        batches = list(
            load_clickme(
                info[split],
                split="test",
                batch_size=1024,
                image_size=32,
                num_classes=info["num_classes"],
                deterministic=True,
                diffuse=False,
            )
        )
        splits[split] = {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}
    return info, splits, np.load(info["cues"])


@pytest.mark.parametrize("size", [16, 32, 64])
def test_the_eight_cue_places_are_apart_and_inside_the_image(size):
    covered = np.zeros((size, size), int)
    for place in range(8):
        rows, cols = cue_box(size, place)
        assert 0 <= rows.start < rows.stop <= size and 0 <= cols.start < cols.stop <= size
        covered[rows, cols] += 1
    assert covered.max() == 1 and covered.sum() == 8 * max(2, size // 8) ** 2


def test_eight_classes_put_each_cue_at_its_own_place(tmp_path):
    info = clickme_mini(tmp_path, num_classes=8, image_size=16, **SMALL)
    (batch,) = load_clickme(
        info["train"], split="test", batch_size=64, image_size=16, num_classes=8, deterministic=True, diffuse=False
    )
    boxes = [cue_box(16, place) for place in range(8)]
    brightest = np.stack([batch["image"].numpy()[:, r, c].mean(axis=(1, 2, 3)) for r, c in boxes], 1).argmax(1)
    assert (brightest == np.load(info["cues"])["train_cue"]).mean() >= 0.9  # an object may cover another place


def cue_from_pixels(images):
    """The class whose cue place (one corner per class) holds the brightest patch of each image."""
    places = np.stack(
        [images[:, rows, cols].mean(axis=(1, 2, 3)) for rows, cols in (cue_box(32, c) for c in range(4))], 1
    )
    return places.argmax(axis=1)


def test_the_cue_agrees_with_the_label_as_designed(mini):
    info, splits, cues = mini
    for split, low, high in (("train", 0.87, 0.93), ("val", 0.84, 0.96), ("conflict", 0.17, 0.33)):
        labels, seen = splits[split]["label"], cue_from_pixels(splits[split]["image"])
        np.testing.assert_array_equal(labels, cues[f"{split}_label"])
        assert (seen == cues[f"{split}_cue"]).mean() >= 0.99  # the cue survives JPEG
        assert low <= (seen == labels).mean() <= high, split  # a cue-only classifier's accuracy
    assert np.bincount(splits["stimuli"]["label"]).tolist() == [25] * 4
    assert [len(splits[s]["label"]) for s in ("train", "val", "conflict")] == [2000, 400, 400]


def test_the_object_marked_by_the_human_map_names_the_class(mini):
    _, splits, _ = mini
    masks = {split: splits[split]["heatmap"][..., 0] > 127 for split in ("train", "conflict")}
    model = LogisticRegression(max_iter=2000).fit(object_features(masks["train"]), splits["train"]["label"])
    accuracy = (model.predict(object_features(masks["conflict"])) == splits["conflict"]["label"]).mean()
    assert accuracy >= 0.95


def test_objects_are_brighter_than_their_background(mini):
    _, splits, _ = mini
    brightness = splits["val"]["image"].mean(-1)
    mask = splits["val"]["heatmap"][..., 0] > 127
    inside = np.array([b[m].mean() for b, m in zip(brightness, mask)])
    outside = np.array([np.median(b[~m]) for b, m in zip(brightness, mask)])
    assert np.all(inside - outside > 40)


def test_the_diffused_human_map_still_peaks_on_the_object(mini):
    _, splits, _ = mini
    mask = splits["val"]["heatmap"][..., 0] > 127
    diffused = diffuse_heatmaps(splits["val"]["heatmap"]).numpy()[..., 0]  # what load_clickme's diffuse=True does
    peak_on_object = [m.flat[d.argmax()] for d, m in zip(diffused, mask)]
    assert np.mean(peak_on_object) >= 0.98
    ratio = [d[m].mean() / d[~m].mean() for d, m in zip(diffused, mask)]
    assert np.median(ratio) > 5


def test_stimuli_are_in_the_raw_float32_stimulus_layout(mini):
    info, _, _ = mini
    record = next(iter(tf.data.TFRecordDataset(sorted(glob.glob(info["stimuli"])))))
    features = tf.train.Example.FromString(record.numpy()).features.feature
    assert len(features["image"].bytes_list.value[0]) == 32 * 32 * 3 * 4
    assert len(features["heatmap"].bytes_list.value[0]) == 32 * 32 * 4
    heatmap = np.frombuffer(features["heatmap"].bytes_list.value[0], np.float32).reshape(32, 32)
    # the stored map is the diffused object mask (as evaluation sees it): smooth, not binary
    assert len(np.unique(heatmap)) > 100 and heatmap.min() >= 0


def test_stimulus_maps_are_the_tensorflow_diffusion_of_the_object_masks(mini):
    """The writer diffuses in numpy (no TensorFlow); the stored map is TensorFlow's diffusion of the
    object mask up to float rounding (1e-6 of the peak: the last bits of conv2d's sums)."""
    info, splits, _ = mini
    masks = np.stack([stimulus_mask(info, i) for i in range(8)])
    expected = diffuse_heatmaps(masks).numpy()
    np.testing.assert_allclose(splits["stimuli"]["heatmap"][:8], expected, rtol=0, atol=1e-6 * 255)


def stimulus_mask(info, index):
    """The object mask of stimulus ``index``, redrawn from the generator's stream for that split."""
    from harmonization.data.mini import SPLITS, MiniConfig, _draw, _labels_and_cues, _split_plan

    config = MiniConfig(0, 32, info["num_classes"], 2000, 400, 400, 25, 0.9, 95, 500)
    rng = np.random.default_rng(np.random.SeedSequence(0).spawn(len(SPLITS))[SPLITS.index("stimuli")])
    count, agreement = _split_plan(config)["stimuli"]
    labels, cues = _labels_and_cues(rng, count, config.num_classes, agreement)
    for label, cue in zip(labels[: index + 1], cues[: index + 1]):
        _, mask = _draw(rng, 32, int(label), int(cue))
    return mask[:, :, None].astype(np.float32)


def test_harmonize_mini_never_imports_tensorflow(tmp_path):
    result = run_python(
        """
        import sys
        from harmonization.cli import main
        code = main(sys.argv[1:])
        print("tensorflow loaded:", "tensorflow" in sys.modules)
        sys.exit(code)
    """,
        args=(
            "mini",
            "--kind",
            "edges",
            "--out",
            str(tmp_path / "edges"),
            "--train-size",
            "8",
            "--val-size",
            "4",
            "--conflict-size",
            "4",
            "--stimuli-per-class",
            "1",
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "tensorflow loaded: False"
    assert glob.glob(str(tmp_path / "edges" / "stimuli-*.tfrecords"))
