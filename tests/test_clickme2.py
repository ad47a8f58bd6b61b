"""The lab's ClickMe 2 files: readers, the lab's filters and maps, the split-half ceiling, the
conversion to shards, the ceiling as a denominator, and one-line errors for bad files.

Every expected map here is computed in the test, from the published processing (count maps of
in-image clicks, mean over participants, a normalised disc blur applied twice with zero padding,
short-side resize and centre crop) with scipy.ndimage, independently of harmonization.clickme2.
"""

import csv
import datetime
import glob
import json
import os

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, stats

from harmonization.cli import main
from harmonization.clickme import iter_clickme
from harmonization.clickme2.ceiling import image_rng, split_half_ceiling, split_halves
from harmonization.clickme2.conversion import convert
from harmonization.clickme2.denominator import load_denominator
from harmonization.clickme2.errors import ClickFileError
from harmonization.clickme2.filtering import Settings
from harmonization.clickme2.hdf5 import iter_clickmaps
from harmonization.clickme2.maps import build_maps
from harmonization.metrics import HUMAN_CEILING

SETTINGS = Settings(
    blur_size=7,
    min_clicks=4,
    max_clicks=12,
    min_subjects=6,
    image_shape=(40, 48),
    center_crop=(32, 32),
    null_iterations=5,
)
SETTINGS_FLAGS = [
    "--blur-size",
    "7",
    "--min-clicks",
    "4",
    "--max-clicks",
    "12",
    "--min-subjects",
    "6",
    "--image-shape",
    "40",
    "48",
    "--center-crop",
    "32",
    "32",
    "--null-iterations",
    "5",
]
IMAGES = ("cls_a/img0.png", "cls_a/img1.png", "cls_b/img2.png", "cls_b/img3.png", "cls_b/few.png")


def participant(rng, centre, noise, clicks, frame=(40, 48)):
    """One participant's clicks: around ``centre`` (the known density), a ``noise`` share uniform
    over the frame, a few just outside it."""
    points = []
    for _ in range(clicks):
        if rng.random() < noise:
            points.append((int(rng.integers(-2, frame[1] + 2)), int(rng.integers(-2, frame[0] + 2))))
        else:
            y, x = rng.normal(centre, 3.0)
            points.append((int(np.clip(round(x), 0, frame[1] - 1)), int(np.clip(round(y), 0, frame[0] - 1))))
    return points


def lab_rows(seed=0):
    """(image_path, user_id, clicks) rows that exercise every filter."""
    rng = np.random.default_rng(seed)
    rows = []
    for index, name in enumerate(IMAGES):
        centre = (10 + 5 * index, 14 + 6 * index)
        for user in range(5 if name.endswith("few.png") else 8):
            rows.append((f"/data/clickme/{name}", user, participant(rng, centre, 0.3, int(rng.integers(5, 16)))))
    rows.append(("/data/clickme/cls_a/img0.png", 0, participant(rng, (30, 40), 0.0, 9)))  # duplicate: dropped
    rows.append(("/data/clickme/cls_a/img1.png", 50, [(3, 4)]))  # one click: empty
    rows.append(("/data/clickme/cls_a/img1.png", 51, participant(rng, (5, 5), 0.0, 4)))  # min_clicks: dropped
    return rows


def expected_lists(rows, settings):
    """The lab's row and image filters, written out plainly."""
    seen, groups = set(), {}
    for path, user, clicks in rows:
        if (user, path) in seen:
            continue
        seen.add((user, path))
        if len(clicks) < 2 or len(clicks) <= settings.min_clicks:
            continue
        groups.setdefault("/".join(path.split("/")[-2:]), []).append(clicks[: settings.max_clicks])
    return {key: lists for key, lists in groups.items() if len(lists) >= settings.min_subjects}


def disc(size):
    r = (size - 1) / 2
    y, x = np.mgrid[:size, :size]
    return ((x - r) ** 2 + (y - r) ** 2 <= r * r).astype(np.int64)


def counts(click_lists, frame, min_clicks):
    maps = []
    for clicks in click_lists:
        grid = np.zeros(frame, np.int64)
        for x, y in clicks:
            if 0 <= x < frame[1] and 0 <= y < frame[0]:
                grid[y, x] = min(grid[y, x] + 1, 255)
        if grid.sum() >= min_clicks:
            maps.append(grid)
    return np.array(maps)


def uncropped_map(click_lists, settings):
    kernel = disc(settings.blur_size) / disc(settings.blur_size).sum()
    mean = counts(click_lists, settings.image_shape, settings.min_clicks).mean(0)
    return ndimage.convolve(ndimage.convolve(mean, kernel, mode="constant"), kernel, mode="constant")


def crop(array, settings):
    top = (array.shape[-2] - settings.center_crop[0]) // 2
    left = (array.shape[-1] - settings.center_crop[1]) // 2
    return array[..., top : top + settings.center_crop[0], left : left + settings.center_crop[1]]


def own_ceiling(click_lists, settings, image_id):
    """The split-half ceiling on the library's random halves, computed here with scipy."""
    rng = image_rng(settings, image_id)
    mask = disc(settings.blur_size)
    blurred = np.array(
        [
            ndimage.convolve(ndimage.convolve(m, mask, mode="constant"), mask, mode="constant")
            for m in counts(click_lists, settings.image_shape, settings.min_clicks)
        ]
    )
    scores = []
    for _ in range(settings.null_iterations):
        test, reference = split_halves(len(blurred), rng)
        a = crop(np.tensordot(test, blurred, axes=1), settings).ravel()
        b = crop(np.tensordot(reference, blurred, axes=1), settings).ravel()
        scores.append(stats.spearmanr(a, b).statistic)
    return float(np.nanmean(scores))


def write_images(root, names=IMAGES, size=(50, 60)):
    rng = np.random.default_rng(1)
    for name in names:
        os.makedirs(root / os.path.dirname(name), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(root / name)
    return root


def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_path", "clicks", "user_id"])
        for image_path, user, clicks in rows:
            writer.writerow([image_path, str([tuple(c) for c in clicks]), user])
    return path


def object_array(values):
    array = np.empty(len(values), object)
    for index, value in enumerate(values):
        array[index] = value
    return array


def write_npz(path, rows, catch=None, mobile=None):
    n = len(rows)
    np.savez(
        path,
        file_pointer=np.array([r[0] for r in rows]),
        clickmap_x=object_array([np.array([c[0] for c in r[2]]) for r in rows]),
        clickmap_y=object_array([np.array([c[1] for c in r[2]]) for r in rows]),
        user_id=np.array([r[1] for r in rows]),
        user_catch_trial=np.ones(n) if catch is None else np.asarray(catch, float),
        is_mobile=object_array([[] if i % 3 else [False] for i in range(n)] if mobile is None else mobile),
    )
    return path


def shard_maps(out):
    """{image id: (heatmap, label, image shape)} of a conversion's shards, via ceilings.json."""
    table = json.loads((out / "ceilings.json").read_text())
    found = {}
    for name, records in table["shards"].items():
        for record, entry in zip(iter_clickme(out / name), records, strict=True):
            found[entry["id"]] = (record.heatmap, record.label, record.image.shape)
    return found, table


def assert_maps_equal(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.max(expected)))


def test_csv_maps_equal_the_independent_computation_with_the_lab_filters(tmp_path, capsys):
    rows = lab_rows()
    images = write_images(tmp_path / "images")
    convert(str(write_csv(tmp_path / "clicks.csv", rows)), str(images), str(tmp_path / "out"), SETTINGS)
    printed = capsys.readouterr().out
    assert "duplicate submissions: 1" in printed and "empty click lists: 1" in printed
    assert "click lists with 4 clicks or fewer: 1" in printed
    assert "images with fewer than 6 participants (skipped): 1" in printed
    found, table = shard_maps(tmp_path / "out")
    expected = expected_lists(rows, SETTINGS)
    assert sorted(found) == sorted(expected) and "cls_b/few.png" not in found
    for image_id, lists in expected.items():
        heatmap, label, shape = found[image_id]
        assert_maps_equal(heatmap, crop(uncropped_map(lists, SETTINGS), SETTINGS))
        assert label == (0 if image_id.startswith("cls_a") else 1) and shape == (32, 32, 3)
    records = [r for records in table["shards"].values() for r in records]
    for record in records:
        assert record["ceiling"] == pytest.approx(own_ceiling(expected[record["id"]], SETTINGS, record["id"]), abs=1e-9)
    assert table["mean_ceiling"] == pytest.approx(np.mean([r["ceiling"] for r in records]))


def test_npz_maps_drop_failed_catch_trials_and_mobile_participants(tmp_path):
    rows = lab_rows(seed=2)
    catch = np.ones(len(rows))
    catch[::7] = 0.9  # below the 0.95 threshold
    mobile = [[True] if i % 5 == 1 else ([] if i % 2 else [False]) for i in range(len(rows))]
    kept = [row for i, row in enumerate(rows) if catch[i] >= 0.95 and i % 5 != 1]
    settings = Settings(**{**SETTINGS.as_dict(), "min_subjects": 4, "image_shape": (40, 48), "center_crop": (32, 32)})
    path = write_npz(tmp_path / "clicks.npz", rows, catch, object_array(mobile))
    convert(str(path), str(write_images(tmp_path / "images")), str(tmp_path / "out"), settings)
    found, _ = shard_maps(tmp_path / "out")
    expected = expected_lists(kept, settings)
    assert sorted(found) == sorted(expected)
    for image_id, lists in expected.items():
        assert_maps_equal(found[image_id][0], crop(uncropped_map(lists, settings), settings))


def write_hdf5(path, maps):
    with h5py.File(path, "w") as handle:
        group, counted = handle.create_group("clickmaps"), handle.create_group("click_counts")
        handle.create_group("metadata").attrs["total_maps"] = len(maps)
        for image_id, (clickmap, participants) in maps.items():
            entry = group.create_group(image_id.replace("/", "_"))
            entry.create_dataset("clickmap", data=clickmap[None].astype(np.float32))
            entry.create_dataset("bin_clickmaps", data=np.array([1]))
            entry.attrs["original_path"] = image_id
            entry.attrs["shape"] = clickmap[None].shape
            counted.create_dataset(image_id.replace("/", "_"), data=participants)
    return path


def test_hdf5_clickmaps_become_shards_resized_and_cropped(tmp_path):
    expected = expected_lists(lab_rows(), SETTINGS)
    stored = {key: (uncropped_map(lists, SETTINGS), len(lists)) for key, lists in expected.items()}
    stored["cls_b/img3.png"] = (np.kron(stored["cls_b/img3.png"][0], np.ones((2, 2))), 8)  # at twice the size
    path = write_hdf5(tmp_path / "maps.h5", stored)
    assert {m.image_id: m.participants for m in iter_clickmaps(path)} == {k: v[1] for k, v in stored.items()}
    convert(str(path), str(write_images(tmp_path / "images")), str(tmp_path / "out"), SETTINGS)
    found, table = shard_maps(tmp_path / "out")
    assert sorted(found) == sorted(stored)
    for image_id, (clickmap, _) in stored.items():
        small = clickmap[::2, ::2] if clickmap.shape[0] == 80 else clickmap  # nearest resize of an exact 2x
        assert_maps_equal(found[image_id][0], crop(small, SETTINGS))
    assert table["measured"] == 0  # a processed file holds no participant maps: no ceiling


def test_split_halves_are_disjoint_halves_topped_up_from_themselves():
    rng = np.random.default_rng(0)
    for n in (2, 7, 10):
        test, reference = split_halves(n, rng)
        assert test.sum() == 2 * (n // 2) and reference.sum() == n  # the rest of the order, topped up by n // 2
        assert not np.any((test > 0) & (reference > 0))
        assert (test > 0).sum() <= n // 2 and (reference > 0).sum() <= n - n // 2


def test_split_half_ceiling_matches_the_own_estimate_and_rises_as_noise_falls():
    rng = np.random.default_rng(5)
    settings = Settings(
        **{
            **SETTINGS.as_dict(),
            "image_shape": (40, 48),
            "center_crop": (32, 32),
            "null_iterations": 8,
            "max_clicks": 40,
        }
    )
    ceilings = {}
    for noise in (0.9, 0.5, 0.1):
        lists = [participant(rng, (20, 24), noise, 30) for _ in range(16)]
        maps = build_maps(lists, settings.image_shape, settings)
        ceiling = split_half_ceiling(maps, settings, image_rng(settings, "x/y"))
        assert ceiling == pytest.approx(own_ceiling(lists, settings, "x/y"), abs=1e-9)
        ceilings[noise] = ceiling
    assert ceilings[0.9] < ceilings[0.5] < ceilings[0.1]


def test_denominators_constant_mean_and_per_image(tmp_path):
    table = {
        "format": "clickme2-ceilings",
        "shards": {"a.tfrecords": [{"ceiling": 0.5}, {"ceiling": None}], "b.tfrecords": [{"ceiling": 0.8}]},
    }
    path = tmp_path / "ceilings.json"
    path.write_text(json.dumps(table))
    spearman = np.array([0.25, 0.3, 0.4])
    assert load_denominator().alignment(spearman) == pytest.approx(spearman.mean() / HUMAN_CEILING)
    mean = load_denominator("mean", path)
    assert mean.value == pytest.approx(0.65) and mean.describe()["kind"] == "mean"
    per_image = load_denominator("per-image", path, ["x/b.tfrecords", "y/a.tfrecords"])
    assert per_image.alignment(spearman) == pytest.approx((0.25 / 0.8 + 0.3 / 0.5) / 2)  # no ceiling: left out
    with pytest.raises(ValueError, match="lists 3 images but the data hold 4"):
        per_image.check_count(4)
    with pytest.raises(ValueError, match="does not list shard c.tfrecords"):
        load_denominator("per-image", path, ["c.tfrecords"])


def test_rerun_skips_finished_shards_and_refuses_other_settings(tmp_path):
    clicks = str(write_csv(tmp_path / "clicks.csv", lab_rows()))
    images, out = str(write_images(tmp_path / "images")), tmp_path / "out"
    first = convert(clicks, images, str(out), SETTINGS, shard_size=2)
    shards = sorted(glob.glob(str(out / "clickme2-*.tfrecords")))
    assert len(shards) == 2
    os.remove(out / "parts" / "00001.json")  # as if killed after the first shard
    stamp = os.stat(shards[0]).st_mtime_ns
    assert convert(clicks, images, str(out), SETTINGS, shard_size=2)["shards"] == first["shards"]
    assert os.stat(shards[0]).st_mtime_ns == stamp
    with pytest.raises(ValueError, match="holds a conversion of another input or with other settings"):
        convert(clicks, images, str(out), Settings(**{**SETTINGS.as_dict(), "seed": 1}), shard_size=2)


def one_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_files_give_one_line_naming_file_and_row(tmp_path, capsys):
    images = str(write_images(tmp_path / "images"))
    rows = lab_rows()
    argv = ["--images", images, "--out", str(tmp_path / "out"), *SETTINGS_FLAGS]
    bad = tmp_path / "bad.csv"
    write_csv(bad, rows)
    lines = bad.read_text().splitlines()
    bad.write_text("\n".join(lines[:3] + ['/d/cls_a/img0.png,"[(1, 2), (x, 4)]",7'] + lines[3:]) + "\n")
    assert one_line(capsys, ["clickme2", str(bad), *argv]).endswith(
        f"{bad} line 4: malformed clicks '[(1, 2), (x, 4)]' (expected '[(x, y), ...]' with integer pixel coordinates)"
    )
    bad.write_text("\n".join(lines[:2] + ['/d/cls_a/img0.png,"[(1, 2), (3, 4)]",anna'] + lines[2:]) + "\n")
    assert f"{bad} line 3: user_id 'anna' is not a whole number" in one_line(capsys, ["clickme2", str(bad), *argv])
    os.remove(os.path.join(images, "cls_b", "img2.png"))
    message = one_line(capsys, ["clickme2", str(write_csv(tmp_path / "c.csv", rows)), *argv])
    assert message.endswith(f"c.csv line {2 + 16}: image 'cls_b/img2.png' not found under {images}")
    npz = write_npz(tmp_path / "c.npz", rows)
    data = dict(np.load(npz, allow_pickle=True))
    del data["user_catch_trial"]
    np.savez(npz, **data)
    assert "c.npz key 'user_catch_trial': missing" in one_line(capsys, ["clickme2", str(npz), *argv])
    data.update(user_catch_trial=np.ones(len(rows)), is_mobile=object_array([datetime.date(2020, 1, 1)] * len(rows)))
    np.savez(npz, **data)
    assert "c.npz key 'is_mobile': unreadable object array (refusing to load datetime.date)" in one_line(
        capsys, ["clickme2", str(npz), *argv]
    )
    assert not os.path.exists(tmp_path / "out" / "ceilings.json")


def test_hdf5_data_outside_the_file_is_refused(tmp_path):
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as handle:
        handle.create_dataset("clickmap", data=np.ones((1, 4, 4)))
    cases = {}
    with h5py.File(tmp_path / "link.h5", "w") as handle:
        handle.create_group("clickmaps/a_b")["clickmap"] = h5py.ExternalLink(str(outside), "clickmap")
    cases["link.h5"] = "key 'clickmaps/a_b/clickmap': is an external link"
    with h5py.File(tmp_path / "counts.h5", "w") as handle:
        handle.create_group("clickmaps")
        handle["click_counts"] = h5py.ExternalLink(str(outside), "/")
    cases["counts.h5"] = "key 'click_counts': is an external link"
    with h5py.File(tmp_path / "virtual.h5", "w") as handle:
        layout = h5py.VirtualLayout(shape=(1, 4, 4), dtype="f8")
        layout[:] = h5py.VirtualSource(str(outside), "clickmap", shape=(1, 4, 4))
        handle.create_group("clickmaps/a_b").create_virtual_dataset("clickmap", layout)
    cases["virtual.h5"] = "key 'clickmaps/a_b/clickmap': is a virtual dataset"
    (tmp_path / "raw.bin").write_bytes(np.ones(16).tobytes())
    with h5py.File(tmp_path / "external.h5", "w") as handle:
        handle.create_group("clickmaps/a_b").create_dataset(
            "clickmap", shape=(1, 4, 4), dtype="<f8", external=[(str(tmp_path / "raw.bin"), 0, 128)]
        )
    cases["external.h5"] = "key 'clickmaps/a_b/clickmap': has external storage"
    for name, message in cases.items():
        with pytest.raises(ClickFileError, match=message) as error:
            list(iter_clickmaps(tmp_path / name))
        assert str(error.value).startswith(str(tmp_path / name)) and "\n" not in str(error.value)


def test_a_converted_set_trains_evaluates_with_each_denominator_and_is_attacked(tmp_path, capsys):
    rng = np.random.default_rng(3)
    names = [f"cls_{c}/im{i}.png" for c in "ab" for i in range(4)]
    rows = [
        (f"/d/{name}", user, participant(rng, (12 + 8 * (k % 2), 14 + 6 * (k // 4)), 0.3, 14, (36, 36)))
        for k, name in enumerate(names)
        for user in range(6)
    ]
    images, out = write_images(tmp_path / "images", names, (40, 40)), tmp_path / "set"
    flags = [
        "--blur-size",
        "5",
        "--min-clicks",
        "4",
        "--max-clicks",
        "20",
        "--min-subjects",
        "4",
        "--image-shape",
        "36",
        "36",
        "--center-crop",
        "32",
        "32",
        "--null-iterations",
        "3",
        "--shard-size",
        "4",
    ]
    assert (
        main(["clickme2", str(write_csv(tmp_path / "c.csv", rows)), "--images", str(images), "--out", str(out), *flags])
        == 0
    )
    ceilings = json.loads((out / "ceilings.json").read_text())
    assert ceilings["records"] == 8 and "mean split-half ceiling" in capsys.readouterr().out
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                "small_cnn",
                "--train",
                str(out),
                "--val",
                str(out),
                "--epochs",
                "1",
                "--out",
                str(run),
                "--image-size",
                "32",
                "--num-classes",
                "2",
                "--batch-size",
                "4",
                "--seed",
                "1",
                "--no-collapse-guard",
                "--verbose",
                "0",
            ]
        )
        == 0
    )
    results = {}
    for kind in ("constant", "mean", "per-image"):
        argv = [
            "evaluate",
            "--weights",
            str(run / "model.keras"),
            "--data",
            str(out),
            "--split",
            "test",
            "--out",
            str(tmp_path / f"{kind}.json"),
            "--ceiling",
            kind,
        ]
        assert main(argv + ([] if kind == "constant" else ["--ceilings", str(out / "ceilings.json")])) == 0
        results[kind] = json.loads((tmp_path / f"{kind}.json").read_text())["evaluation"]
    assert "human ceiling" in capsys.readouterr().out
    mean_spearman = results["constant"]["spearman"]["mean"]
    assert results["constant"]["denominator"] == {"kind": "constant", "value": HUMAN_CEILING, "source": None}
    assert results["constant"]["alignment_score"] == pytest.approx(mean_spearman / HUMAN_CEILING)
    assert results["mean"]["denominator"]["value"] == pytest.approx(ceilings["mean_ceiling"])
    assert results["mean"]["alignment_score"] == pytest.approx(mean_spearman / ceilings["mean_ceiling"])
    assert results["per-image"]["denominator"]["kind"] == "per-image"
    assert results["per-image"]["denominator"]["records"] == 8
    from harmonization.clickme import resolve_shards
    from harmonization.data import load_clickme
    from harmonization.evaluation import evaluate_clickme
    from harmonization.models import load_harmonized

    shards = resolve_shards(str(out), "ClickMe shard")
    in_batches_of_3 = evaluate_clickme(  # record positions run on across batches
        load_harmonized(str(run / "model.keras"), None, None, 32),
        load_clickme(str(out), "test", batch_size=3, image_size=32, num_classes=2, deterministic=True),
        denominator=load_denominator("per-image", out / "ceilings.json", shards),
    )
    own = np.array([r["ceiling"] for shard in shards for r in ceilings["shards"][os.path.basename(shard)]])
    expected = np.nanmean(in_batches_of_3["per_image"]["spearman"] / own)
    assert in_batches_of_3["alignment_score"] == pytest.approx(expected)
    assert results["per-image"]["alignment_score"] == pytest.approx(expected, abs=1e-6)

    import torch
    from builders import SWEEP_MODEL, cli_args, make_checkpoint

    from attacks_torch.cli import main as adv_align

    from attacks_torch.models import load_model
    from attacks_torch.stimuli import load_stimuli

    torch.set_num_threads(1)
    checkpoint = make_checkpoint(tmp_path)
    model = load_model(SWEEP_MODEL, checkpoint=checkpoint, num_classes=4)
    with torch.no_grad():  # relabel every image with the model's answer, so that each one is attacked
        predicted = model(model.resize_images(load_stimuli(str(out)).images)).argmax(1).tolist()
    labelled = tmp_path / "labelled"
    for position, name in enumerate(sorted(names)):
        os.makedirs(labelled / f"p{predicted[position]}", exist_ok=True)
        os.link(images / name, labelled / f"p{predicted[position]}" / name.replace("/", "_"))
    (tmp_path / "classes.txt").write_text("p0\np1\np2\np3\n")
    by_prediction = [
        (f"/d/p{predicted[sorted(names).index(name)]}/{name.replace('/', '_')}", user, clicks)
        for (path, user, clicks), name in zip(rows, [r[0][3:] for r in rows])
    ]
    out = tmp_path / "labelled-set"
    assert (
        main(
            [
                "clickme2",
                str(write_csv(tmp_path / "p.csv", by_prediction)),
                "--images",
                str(labelled),
                "--out",
                str(out),
                "--classes",
                str(tmp_path / "classes.txt"),
                *flags,
            ]
        )
        == 0
    )
    table = json.loads((out / "ceilings.json").read_text())
    own = [r["ceiling"] for shard in sorted(table["shards"]) for r in table["shards"][shard]]
    attacked = tmp_path / "attack"
    argv = cli_args(f"ok={SWEEP_MODEL}@{checkpoint}", str(out / "clickme2-*.tfrecords"), attacked)
    assert adv_align(argv) == 0
    assert "ok [l2_pgd]: done" in capsys.readouterr().out
    summary_path = attacked / "ok" / "l2_pgd" / "summary.json"
    assert "denominator" not in json.loads(summary_path.read_text())  # raw Spearman unless asked
    assert adv_align(argv + ["--ceiling", "per-image", "--ceilings", str(out / "ceilings.json")]) == 0
    summary = json.loads(summary_path.read_text())  # a finished model gains the division, not a rerun
    with open(attacked / "ok" / "l2_pgd" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    fooled = [(float(r["alignment"]), own[i]) for i, r in enumerate(rows) if r["fooled"] == "True"]
    assert (
        summary["denominator"]["kind"] == "per-image" and summary["alignment_over_ceiling"]["count"] == len(fooled) > 0
    )
    assert summary["alignment_over_ceiling"]["mean"] == pytest.approx(np.mean([a / c for a, c in fooled]))


def test_native_size_maps_scale_the_disc_then_resize_the_short_side(tmp_path):
    settings = Settings(**{**SETTINGS.as_dict(), "native_size": True, "min_subjects": 2})
    rng = np.random.default_rng(4)
    frame = (60, 84)  # the image's own size: short side 60 -> 40, disc 7 * 60 / 40 = 10.5 -> 10 -> 11
    lists = [participant(rng, (30, 40), 0.2, 10, frame) for _ in range(3)]
    write_images(tmp_path / "images", ["cls_a/big.png"], frame)
    write_csv(tmp_path / "c.csv", [("/x/cls_a/big.png", user, clicks) for user, clicks in enumerate(lists)])
    convert(str(tmp_path / "c.csv"), str(tmp_path / "images"), str(tmp_path / "out"), settings)
    found, _ = shard_maps(tmp_path / "out")
    kernel = disc(11) / disc(11).sum()
    native = ndimage.convolve(
        ndimage.convolve(counts(lists, frame, settings.min_clicks).mean(0), kernel, mode="constant"),
        kernel,
        mode="constant",
    )
    rows = (np.arange(40) * 60 + 30) // 40  # nearest: source pixel floor((i + 0.5) * in / out)
    cols = (np.arange(56) * 84 + 42) // 56
    assert_maps_equal(found["cls_a/big.png"][0], crop(native[rows][:, cols], settings))


def test_include_exclude_pick_images_and_the_jpeg_layout_keeps_the_map_shape(tmp_path, capsys):
    rows = lab_rows()
    settings = Settings(**{**SETTINGS.as_dict(), "include": "cls_a", "exclude": "img1"})
    convert(
        str(write_csv(tmp_path / "c.csv", rows)),
        str(write_images(tmp_path / "images")),
        str(tmp_path / "out"),
        settings,
        layout="jpeg",
    )
    assert "rows of images outside --include/--exclude: 31" in capsys.readouterr().out  # after 1 duplicate
    found, _ = shard_maps(tmp_path / "out")
    assert list(found) == ["cls_a/img0.png"]
    expected = crop(uncropped_map(expected_lists(rows, SETTINGS)["cls_a/img0.png"], SETTINGS), SETTINGS)
    stored = found["cls_a/img0.png"][0]  # 8-bit JPEG, peak 255: the training reader diffuses it again
    assert stored.max() > 240 and np.corrcoef(stored.ravel(), expected.ravel())[0, 1] > 0.99


def test_evaluate_and_attack_refuse_a_ceilings_file_without_a_measured_ceiling(tmp_path, capsys):
    from attacks_torch.cli import main as adv_align

    (tmp_path / "m.keras").write_text("")
    (tmp_path / "a.tfrecords").write_text("")  # its content is read after the ceiling is resolved
    argv = ["evaluate", "--weights", str(tmp_path / "m.keras"), "--data", str(tmp_path), "--ceilings", "c.json"]
    assert one_line(capsys, argv).endswith("--ceilings is read with --ceiling mean or --ceiling per-image only")
    assert one_line(capsys, argv[:-2] + ["--ceiling", "mean"]).endswith(
        "the mean ceiling needs the ceilings file of the conversion (ceilings.json)"
    )
    assert adv_align(["attack", "--models", "m", "--stimuli", "x", "--out", str(tmp_path), "--ceilings", "c"]) == 2
    assert (
        capsys.readouterr().err.strip().endswith("--ceilings is read with --ceiling mean or --ceiling per-image only")
    )
