"""The test beds beside ClickMe-mini: deterministic, written in ClickMe-mini's splits, and built as
documented (the shortcut, read back from the pixels, agrees with the label in ~90% of train images
and is independent of it in "conflict"; it lies off the human map; the object names the class)."""

import glob
import os

import numpy as np
import pytest

import harmonization  # noqa: F401  (loads triton before TensorFlow)
from builders import object_features
from sklearn.linear_model import LogisticRegression

from harmonization.data import clickme_mini, load_clickme
from harmonization.data.testbeds import DEFAULT_CLASSES, KINDS, edge_line, write_testbed

SMALL = dict(train_size=24, val_size=8, conflict_size=8, stimuli_per_class=2, shard_size=10)
SPLITS = ("train", "val", "conflict", "stimuli")


def files(directory):
    return {os.path.basename(p): open(p, "rb").read() for p in sorted(glob.glob(os.path.join(directory, "*")))}


@pytest.mark.parametrize("kind", KINDS[1:])
def test_same_seed_same_bytes_another_seed_differs(tmp_path, kind):
    info = write_testbed(kind, tmp_path / "a", seed=3, **SMALL)
    write_testbed(kind, tmp_path / "b", seed=3, **SMALL)
    write_testbed(kind, tmp_path / "c", seed=4, **SMALL)
    a, b, c = (files(tmp_path / name) for name in "abc")
    assert a == b and a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a if name.endswith(".tfrecords"))
    assert info["num_classes"] == DEFAULT_CLASSES[kind] and info["image_size"] == 32
    assert all(glob.glob(info[split]) for split in SPLITS)


@pytest.mark.compat
def test_mini_is_clickme_mini_and_kinds_differ(tmp_path):
    write_testbed("mini", tmp_path / "mini", seed=1, **SMALL)
    clickme_mini(tmp_path / "direct", seed=1, **SMALL)
    assert files(tmp_path / "mini") == files(tmp_path / "direct")
    write_testbed("edges", tmp_path / "edges", seed=1, **dict(SMALL, num_classes=4))
    edges = files(tmp_path / "edges")
    assert all(edges[name] != data for name, data in files(tmp_path / "mini").items() if name.endswith(".tfrecords"))


def test_bad_kinds_and_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of mini, edges, stripes, neighbour, got 'dots'"):
        write_testbed("dots", tmp_path)
    with pytest.raises(ValueError, match=r"num_classes must lie in \[2, 4\], got 5"):
        write_testbed("stripes", tmp_path, num_classes=5)
    with pytest.raises(ValueError, match="unknown test bed option.*colour"):
        write_testbed("edges", tmp_path, colour=3)
    with pytest.raises(ValueError, match="cue_agreement"):
        write_testbed("neighbour", tmp_path, cue_agreement=2.0)
    assert not os.listdir(tmp_path)


@pytest.fixture(scope="module", params=KINDS[1:])
def bed(request, tmp_path_factory):
    """A test bed of each kind, decoded in file order (the order of cues.npz)."""
    kind = request.param
    info = write_testbed(
        kind,
        tmp_path_factory.mktemp(kind),
        seed=0,
        train_size=1000,
        val_size=100,
        conflict_size=400,
        stimuli_per_class=2,
    )
    splits = {}
    for split in ("train", "conflict"):
        batches = list(
            load_clickme(
                info[split],
                split="test",
                batch_size=1000,
                image_size=32,
                num_classes=info["num_classes"],
                deterministic=True,
                diffuse=False,
            )
        )
        splits[split] = {key: np.concatenate([b[key].numpy() for b in batches]) for key in batches[0]}
    return kind, info, splits, np.load(info["cues"])


def edges_cue(images, masks):
    places = [images[:, rows, cols].mean(axis=(1, 2, 3)) for rows, cols in (edge_line(32, p) for p in range(6))]
    return np.stack(places, 1).argmax(1)


def stripes_cue(images, masks):
    """The orientation along which neighbouring background pixels differ least."""
    grey = images.mean(-1)
    shifts = [(0, 1), (1, 0), (1, -1), (1, 1)]  # along horizontal, vertical, diagonal, anti-diagonal stripes
    background = ~masks
    scores = []
    for dr, dc in shifts:
        moved = np.roll(grey, (-dr, -dc), axis=(1, 2))
        keep = background & np.roll(background, (-dr, -dc), axis=(1, 2))
        keep[:, -1:, :] = keep[:, :, -1:] = keep[:, :, :1] = False  # no wrapped neighbours
        scores.append((np.abs(grey - moved) * keep).sum((1, 2)) / keep.sum((1, 2)))
    return np.stack(scores, 1).argmin(1)


def neighbour_cue(images, masks):
    """The side of the object (above, below, left, right) with the brightest 2x2 spot just beyond it."""
    grey = images.mean(-1)
    boxes = (grey[:, :-1, :-1] + grey[:, 1:, :-1] + grey[:, :-1, 1:] + grey[:, 1:, 1:]) / 4
    cues = []
    for box, mask in zip(boxes, masks):
        rows, cols = np.nonzero(mask)
        center = np.array([rows.min() + rows.max(), cols.min() + cols.max()]) / 2 - 0.5
        half = max(rows.max() - rows.min(), cols.max() - cols.min()) / 2
        scores = []
        for direction in np.array([(-1, 0), (1, 0), (0, -1), (0, 1)]):
            across = direction[::-1]
            spots = {
                tuple(np.clip(np.rint(center + direction * t + across * o).astype(int), 0, 30))
                for t in np.arange(half + 1, half + 8)
                for o in (-1, 0, 1)
            }
            scores.append(max((box[r, c] for r, c in spots if not mask[r : r + 2, c : c + 2].any()), default=-np.inf))
        cues.append(int(np.argmax(scores)))
    return np.array(cues)


CUE_READERS = {"edges": edges_cue, "stripes": stripes_cue, "neighbour": neighbour_cue}


def test_the_shortcut_agrees_with_the_label_as_designed_and_lies_off_the_map(bed):
    kind, info, splits, cues = bed
    chance = 1 / info["num_classes"]
    for split, low, high in (("train", 0.86, 0.94), ("conflict", chance - 0.07, chance + 0.07)):
        images, labels = splits[split]["image"], splits[split]["label"]
        masks = splits[split]["heatmap"][..., 0] > 127
        seen = CUE_READERS[kind](images, masks)
        np.testing.assert_array_equal(labels, cues[f"{split}_label"])
        assert (seen == cues[f"{split}_cue"]).mean() >= 0.97, split  # the shortcut survives JPEG
        assert low <= (seen == labels).mean() <= high, split  # a shortcut-only classifier's accuracy
    if kind == "edges":  # every border line lies off every object
        border = np.zeros((32, 32), bool)
        for place in range(6):
            border[edge_line(32, place)] = True
        assert not (masks & border).any()


def test_the_object_marked_by_the_human_map_names_the_class(bed):
    _, _, splits, _ = bed
    masks = {split: splits[split]["heatmap"][..., 0] > 127 for split in ("train", "conflict")}
    model = LogisticRegression(max_iter=2000).fit(object_features(masks["train"]), splits["train"]["label"])
    accuracy = (model.predict(object_features(masks["conflict"])) == splits["conflict"]["label"]).mean()
    assert accuracy >= 0.95
