"""Attack engine: the search schedules side by side, batched vs image-by-image search, our DDN vs foolbox.

Models: the offline ImageNet efficientnet-lite0 on the bundled photos (and their mirror images), and
on the same photos cropped otherwise (whole, and 75 %: images the secant's constants were not tuned on), the
tests' tiny CNN on 32x32 synthetic images, and timm's test_resnet and test_vit (random weights, 10
classes, their own predictions as labels). Targets: the secant schedule (the default) at least 2x
fewer model passes per image than the ladder with no image's eps differing by more than the
ladder's tolerance and the same fooled set (it also counts the images whose eps is the ladder's to
the bit); the batched ladder search at least 3x faster than the same search image by
image, at identical eps; our DDN within 2 % of foolbox DDN's median norm at no more wall time.
Passes are counted exactly (CountingModel). Each wall ratio is the median (and range) over
``--rounds`` alternating rounds; a target is "met" only when every round and every stated condition
meets it, "MISSED" when none does, and "not decided" when the rounds straddle it. Prints one block per model and writes
benchmarks/results/attacks.json. Run: python benchmarks/attacks.py [--device cuda] [--threads N]
[--steps 100] [--models test_resnet,test_vit] [--schedules-only]
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_THREADS = torch.get_num_threads()
sys.path.insert(0, str(ROOT / "tests"))  # the tiny trained CNN the tests use

from builders import synthetic_images, trained_cnn  # noqa: E402

from attacks_torch.attacks import ddn  # noqa: E402
from attacks_torch.attacks.schedules import ladder_rungs  # noqa: E402
from attacks_torch.models import LITE0_NAME, load_model  # noqa: E402
from attacks_torch.models.counting import CountingModel  # noqa: E402
from attacks_torch.photos import bundled_photos  # noqa: E402
from attacks_torch.search import minimal_epsilon  # noqa: E402
from harmonization.files import write_json  # noqa: E402

try:
    import foolbox
except ImportError:  # foolbox is a dev extra
    foolbox = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(name, images, labels, adversarial, fooled, attacked, backward, forward, wall) -> dict:
    norms = (adversarial - images).flatten(1).norm(dim=1).cpu()
    fooled, attacked = fooled.cpu(), attacked.cpu()
    n_attacked = int(attacked.sum())
    return {
        "method": name,
        "median_l2": float(norms[fooled].median()) if fooled.any() else math.nan,
        "fooled": int(fooled.sum()),
        "attacked": n_attacked,
        "success_rate": float(fooled.sum()) / max(n_attacked, 1),
        "grads_per_image": float(backward.sum()) / max(n_attacked, 1),
        "forwards_per_image": float(forward.sum()) / max(n_attacked, 1),
        "wall_s": wall,
    }


def _timed(device, fn):
    _sync(device)
    start = time.perf_counter()
    value = fn()
    _sync(device)
    return value, time.perf_counter() - start


def _schedule_comparison(results: dict) -> dict:
    """Per schedule: passes per attacked image, their ratio to the ladder's, and the images whose
    answer differs from the ladder's (fooled set, or eps by more than the ladder's tolerance)."""
    ladder = results["ladder"]
    attacked = ladder.attacked
    tolerance = torch.tensor(
        [
            0.01 * min(r for r in ladder_rungs(10.0, 10.0 / 64) if r >= e * (1 - 1e-9))
            if math.isfinite(e)
            else math.nan
            for e in ladder.eps.tolist()
        ],
        dtype=torch.float64,
    )
    ladder_passes = float(ladder.forward_passes[attacked].sum() + ladder.backward_passes[attacked].sum())
    comparison = {}
    for schedule, result in results.items():
        fooled_same = torch.equal(result.fooled, ladder.fooled)
        both = ladder.fooled & result.fooled
        differing = int(
            (~(result.fooled == ladder.fooled)).sum()
            + ((result.eps - ladder.eps).abs()[both] > tolerance[both] + 1e-12).sum()
        )
        passes = float(result.forward_passes[attacked].sum() + result.backward_passes[attacked].sum())
        comparison[schedule] = {
            "forward_per_image": float(result.forward_passes[attacked].double().mean()),
            "backward_per_image": float(result.backward_passes[attacked].double().mean()),
            "passes_ratio_to_ladder": ladder_passes / passes,
            "same_fooled_set": fooled_same,
            "images_differing": differing,
            "eps_identical_images": int((result.eps.nan_to_num(-1) == ladder.eps.nan_to_num(-1))[attacked].sum()),
        }
    return comparison


def _alternating(device, first, second, rounds: int) -> tuple[tuple, tuple[list[float], list[float]]]:
    """Time ``first`` and ``second`` in alternation, ``rounds`` times each (who goes first alternates
    too), so a change of load on a shared machine hits both alike; (their last values, their walls)."""
    walls, values = ([], []), [None, None]
    for round_ in range(rounds):
        order = (0, 1) if round_ % 2 == 0 else (1, 0)
        for side in order:
            values[side], wall = _timed(device, (first, second)[side])
            walls[side].append(wall)
    return tuple(values), walls


def _spread(ratios: list[float]) -> dict:
    """Median and range of per-round wall ratios."""
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios}


def _verdict(spread: dict, holds, condition: bool = True) -> str:
    """ "met" when every round meets the target (and ``condition``), "MISSED" when none does (or
    ``condition`` fails), else "not decided" (the rounds straddle the target: within noise)."""
    if not condition or not any(holds(r) for r in spread["rounds"]):
        return "MISSED"
    return "met" if all(holds(r) for r in spread["rounds"]) else "not decided (rounds straddle the target)"


def _search_rows(model, images, labels, device, schedules_only: bool, rounds: int) -> tuple[list[dict], dict]:
    rows, results = [], {}
    for schedule in ("ladder", "secant", "reference"):
        result, wall = _timed(
            device, lambda schedule=schedule: minimal_epsilon(model, images, labels, schedule=schedule)
        )
        results[schedule] = result
        rows.append(
            _row(
                f"search batched ({schedule})",
                images,
                labels,
                result.adversarial,
                result.fooled,
                result.attacked,
                result.backward_passes,
                result.forward_passes,
                wall,
            )
        )
    schedules = _schedule_comparison(results)
    for row, schedule in zip(rows, results):
        schedules[schedule]["wall_s"] = row["wall_s"]
    if schedules_only:
        return rows, {"schedules": schedules}

    def per_image():
        return [
            minimal_epsilon(model, images[i : i + 1], labels[i : i + 1], schedule="ladder") for i in range(len(images))
        ]

    def batched_ladder():
        return minimal_epsilon(model, images, labels, schedule="ladder")

    (singles, _), walls = _alternating(device, per_image, batched_ladder, rounds)
    eps = torch.cat([s.eps for s in singles])
    adversarial = torch.cat([s.adversarial for s in singles])
    rows.append(
        _row(
            "search per image (ladder)",
            images,
            labels,
            adversarial,
            torch.cat([s.fooled for s in singles]),
            torch.cat([s.attacked for s in singles]),
            torch.cat([s.backward_passes for s in singles]),
            torch.cat([s.forward_passes for s in singles]),
            statistics.median(walls[0]),
        )
    )
    batched = results["ladder"]
    both = torch.isfinite(eps) & torch.isfinite(batched.eps)
    same_outcome = torch.equal(torch.isfinite(eps), torch.isfinite(batched.eps))
    delta_norms = [(a - images).flatten(1).norm(dim=1) for a in (adversarial, batched.adversarial)]
    norm_gap = (delta_norms[0] - delta_norms[1]).abs().max().item()
    compare = {
        "schedules": schedules,
        "speedup_batched_vs_per_image": _spread([a / b for a, b in zip(*walls)]),
        "eps_identical": bool(same_outcome and torch.equal(eps[both], batched.eps[both])),
        "eps_differing_images": int((eps.nan_to_num(-1) != batched.eps.nan_to_num(-1)).sum()),
        "max_l2_norm_gap": norm_gap,
        "ladder_fooled": int(batched.fooled.sum()),
        "reference_fooled": int(results["reference"].fooled.sum()),
        "ladder_fooled_at_hi": int(batched.fooled_at_hi.sum()),
        "ladder_only": int((batched.fooled & ~results["reference"].fooled).sum()),
        "reference_only": int((~batched.fooled & results["reference"].fooled).sum()),
    }
    return rows, compare


class _Counted(torch.nn.Module):
    """foolbox needs an nn.Module: count its passes through the same accounting as ours."""

    def __init__(self, counter: CountingModel) -> None:
        super().__init__()
        self.counter = counter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.counter(x)


def _min_norm_rows(model, images, labels, steps, device, rounds: int) -> list[dict]:
    """Each minimum-norm attack on the correctly classified images, timed alone (no clean pass, no check)."""
    with torch.no_grad():
        attacked = model(images).argmax(1) == labels
    x, y = images[attacked], labels[attacked]
    attacks = {f"ddn ours ({steps} steps)": lambda counted: ddn(counted, x, y, steps=steps)}
    if foolbox is not None:
        for name, attack in (
            ("DDN", foolbox.attacks.DDNAttack(steps=steps)),
            ("FMN", foolbox.attacks.L2FMNAttack(steps=steps)),
        ):
            attacks[f"foolbox {name} ({steps} steps)"] = lambda counted, attack=attack: attack.run(
                foolbox.PyTorchModel(_Counted(counted).eval(), bounds=(0, 1), device=images.device), x, y
            )
    rows, walls = [], {}
    for name, run in attacks.items():
        counter = CountingModel(model, len(x))
        adversarial, wall = _timed(device, lambda run=run, counter=counter: run(counter))
        walls[name] = [wall]
        with torch.no_grad():
            fooled = model(adversarial).argmax(1) != y
        rows.append(
            _row(
                name,
                x,
                y,
                adversarial,
                fooled,
                torch.ones_like(fooled),
                counter.backward_passes,
                counter.forward_passes,
                wall,
            )
        )
        rows[-1]["norms"] = (adversarial - x).flatten(1).norm(dim=1).where(fooled, math.nan).tolist()
    names = list(attacks)
    if len(names) > 1 and rounds > 1:  # ours and foolbox's DDN again, in alternation, for the wall ratio
        (_, _), extra = _alternating(
            device,
            lambda: attacks[names[0]](CountingModel(model, len(x))),
            lambda: attacks[names[1]](CountingModel(model, len(x))),
            rounds - 1,
        )
        walls[names[0]] += extra[0]
        walls[names[1]] += extra[1]
    for row in rows:
        row["wall_s"] = statistics.median(walls[row["method"]])
        row["wall_rounds"] = walls[row["method"]]
    return rows


def _own_predictions(model, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """n random 64 px images and the model's own predictions as labels (random weights are right on none)."""
    images = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(3)).to(device)
    with torch.no_grad():
        return images, model(images).argmax(1)


def _lite0_batch(device, crops=(0.875,)):
    """The bundled photos at each centre-crop fraction (0.875: the model's own), and their mirror images."""
    images, labels = [], []
    for crop in crops:
        photos = bundled_photos(crop_pct=crop)
        images += [photos.images, photos.images.flip(-1)]  # mirror images keep their labels
        labels += [photos.labels, photos.labels]
    return torch.cat(images).to(device), torch.cat(labels).to(device)


def _print_block(title: str, rows: list[dict], compare: dict, schedules_only: bool) -> None:
    print(f"== {title}")
    print(f"  {'method':32s} {'median L2':>9s} {'fooled':>8s} {'grads/img':>9s} {'fwd/img':>8s} {'wall s':>8s}")
    for r in rows:
        print(
            f"  {r['method']:32s} {r['median_l2']:9.4f} {r['fooled']:>3d}/{r['attacked']:<4d} "
            f"{r['grads_per_image']:9.1f} {r['forwards_per_image']:8.1f} {r['wall_s']:8.2f}"
        )
    for schedule, c in compare["schedules"].items():
        print(
            f"  {schedule:9s}: {c['forward_per_image']:5.1f} fwd + {c['backward_per_image']:5.1f} bwd per image, "
            f"{c['passes_ratio_to_ladder']:.2f}x fewer passes than ladder, same fooled set {c['same_fooled_set']}, "
            f"{c['images_differing']} images differ ({c['eps_identical_images']} eps identical), {c['wall_s']:.2f} s"
        )
    secant = compare["schedules"]["secant"]
    met = secant["passes_ratio_to_ladder"] >= 2 and secant["images_differing"] == 0
    print(f"  secant target (>= 2x fewer passes, no image differing): {'met' if met else 'MISSED'}")
    if schedules_only:
        return
    speedup = compare["speedup_batched_vs_per_image"]
    verdict = _verdict(speedup, lambda r: r >= 3, condition=compare["eps_identical"])
    print(
        f"  batched vs per image: {speedup['median']:.2f}x faster (median of {len(speedup['rounds'])} alternating "
        f"rounds, range {speedup['min']:.2f}-{speedup['max']:.2f}), eps identical: {compare['eps_identical']} "
        f"({compare['eps_differing_images']} images differ); target >= 3x at identical eps: {verdict}; "
        f"max |L2 norm difference| {compare['max_l2_norm_gap']:.1e}"
    )
    print(
        f"  schedules: ladder fooled {compare['ladder_fooled']}, reference fooled {compare['reference_fooled']} "
        f"(ladder only {compare['ladder_only']}, reference only {compare['reference_only']}; "
        f"fooled at hi per the ladder {compare['ladder_fooled_at_hi']})"
    )
    if "ddn_norm_ratio" in compare:
        ratio, wall = compare["ddn_norm_ratio"], compare["ddn_wall_ratio"]
        print(
            f"  ddn ours / foolbox DDN: median norm {ratio:.4f} (target within 2%: "
            f"{'met' if abs(ratio - 1) <= 0.02 else 'MISSED'}), wall {wall['median']:.2f}x (median of "
            f"{len(wall['rounds'])} alternating rounds, range {wall['min']:.2f}-{wall['max']:.2f}; target <= 1: "
            f"{_verdict(wall, lambda r: r <= 1)}); per image, ours / foolbox: median "
            f"{compare['ddn_per_image_ratio']['median']:.3f}, range {compare['ddn_per_image_ratio']['min']:.3f}"
            f"-{compare['ddn_per_image_ratio']['max']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--steps", type=int, default=100, help="DDN / FMN steps")
    parser.add_argument("--cnn-images", type=int, default=64)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating timing rounds behind each wall ratio (median and range reported)",
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 convolutions and matmuls on CUDA (PyTorch's cuDNN default; off here, "
        "since its batch-size-dependent rounding changes borderline search decisions)",
    )
    parser.add_argument(
        "--models",
        default="efficientnet_lite0_imagenet,efficientnet_lite0_crops,tiny_cnn,test_resnet,test_vit",
        help="comma-separated subset",
    )
    parser.add_argument("--timm-images", type=int, default=16, help="random images for the timm test models")
    parser.add_argument(
        "--schedules-only",
        action="store_true",
        help="only the schedules side by side (no per-image search, no minimum-norm attacks)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads or DEFAULT_THREADS)
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32

    cnn_images, cnn_labels = synthetic_images(args.cnn_images, seed=7)
    cases = {
        "efficientnet_lite0_imagenet": (lambda: load_model(LITE0_NAME).to(device), lambda: _lite0_batch(device)),
        # the same photos cropped otherwise: images the secant schedule's constants were not chosen on
        "efficientnet_lite0_crops": (
            lambda: load_model(LITE0_NAME).to(device),
            lambda: _lite0_batch(device, crops=(1.0, 0.75)),
        ),
        "tiny_cnn": (lambda: trained_cnn().to(device), lambda: (cnn_images.to(device), cnn_labels.to(device))),
    }
    for timm_name in ("test_resnet", "test_vit"):
        cases[timm_name] = (
            lambda timm_name=timm_name: (
                load_model(timm_name, weights="random", num_classes=10, seed=0).eval().to(device)
            ),
            lambda: None,
        )
    report = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "tf32": args.tf32,
        "foolbox": getattr(foolbox, "__version__", None),
        "models": {},
    }
    for name in args.models.split(","):
        if name not in cases:
            parser.error(f"--models: unknown {name!r}; choose from {sorted(cases)}")
        load, batch = cases[name]
        model = load()
        images, labels = batch() or _own_predictions(model, args.timm_images, device)
        minimal_epsilon(model, images[:2], labels[:2], hi=0.5)  # warm-up
        rows, compare = _search_rows(model, images, labels, device, args.schedules_only, args.rounds)
        min_norm = [] if args.schedules_only else _min_norm_rows(model, images, labels, args.steps, device, args.rounds)
        if len(min_norm) > 1:
            compare["ddn_norm_ratio"] = min_norm[0]["median_l2"] / min_norm[1]["median_l2"]
            compare["ddn_wall_ratio"] = _spread(
                [a / b for a, b in zip(min_norm[0]["wall_rounds"], min_norm[1]["wall_rounds"])]
            )
            ratios = torch.tensor(min_norm[0]["norms"]) / torch.tensor(min_norm[1]["norms"])
            finite = ratios[torch.isfinite(ratios)]
            compare["ddn_per_image_ratio"] = {
                "median": finite.median().item(),
                "min": finite.min().item(),
                "max": finite.max().item(),
            }
        rows += min_norm
        title = (
            f"{name}: {len(images)} images {tuple(images.shape[1:])}, {device}"
            + (f", tf32 {'on' if args.tf32 else 'off'}" if device.type == "cuda" else "")
            + f", {torch.get_num_threads()} threads"
        )
        _print_block(title, rows, compare, args.schedules_only)
        report["models"][name] = {"images": len(images), "rows": rows, **compare}
    write_json(
        ROOT / "benchmarks" / "results" / ("attack_schedules.json" if args.schedules_only else "attacks.json"), report
    )


def human_alignment_passes(n: int = 32) -> dict:
    """Model passes per image of the sweep's human-alignment pass (attacks_torch.human: both saliency
    scores) beside the default search's, on the tests' tiny CNN; target: at most one forward pass per
    image and under 10 % of the search's passes. Writes benchmarks/results/human_alignment_passes.json."""
    from attacks_torch.human import human_alignment

    model = trained_cnn()
    images, labels = synthetic_images(n, seed=11)
    maps = images.mean(dim=1)  # any non-constant map: the passes do not depend on it
    human = human_alignment(model, images, maps, labels)
    search = minimal_epsilon(model, images, labels)
    per_image = {
        "human_forward": float(human.forward_passes.mean()),
        "human_backward": float(human.backward_passes.mean()),
        "search_forward": float(search.forward_passes.float().mean()),
        "search_backward": float(search.backward_passes.float().mean()),
    }
    human_total = per_image["human_forward"] + per_image["human_backward"]
    search_total = per_image["search_forward"] + per_image["search_backward"]
    report = {
        "images": n,
        "per_image": per_image,
        "share_of_search": human_total / search_total,
        "target_met": per_image["human_forward"] <= 1 and human_total < 0.1 * search_total,
    }
    print(
        f"human alignment: {per_image['human_forward']:.0f} forward + {per_image['human_backward']:.0f} backward "
        f"passes per image; search {per_image['search_forward']:.1f} + {per_image['search_backward']:.1f} "
        f"({100 * report['share_of_search']:.1f} % of the search's)"
    )
    write_json(ROOT / "benchmarks" / "results" / "human_alignment_passes.json", report)
    return report


if __name__ == "__main__":
    main()
    human_alignment_passes()
