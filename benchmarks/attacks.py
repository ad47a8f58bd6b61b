"""Attack engine: batched vs image-by-image minimal-eps search, our DDN vs foolbox DDN and FMN, both schedules.

Models: the offline ImageNet efficientnet-lite0 on the bundled photos (and their mirror images), and
the tests' tiny CNN on 32x32 synthetic images. Targets: the batched search at least 3x faster than
the same search image by image, at identical eps; our DDN within 2 % of foolbox DDN's median norm
at no more wall time. Prints one block per model and writes benchmarks/results/attacks.json.
Run: python benchmarks/attacks.py [--device cuda] [--threads N] [--steps 100]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_THREADS = torch.get_num_threads()
sys.path.insert(0, str(ROOT / "tests"))  # the tiny trained CNN the tests use

from torch_helpers import synthetic_images, trained_cnn  # noqa: E402

from attacks_torch.models import bundled_photos, load_efficientnet_lite0  # noqa: E402
from attacks_torch.models.counting import CountingModel  # noqa: E402
from attacks_torch.attacks import ddn  # noqa: E402
from attacks_torch.search import minimal_epsilon  # noqa: E402

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


def _search_rows(model, images, labels, device) -> tuple[list[dict], dict]:
    rows, results = [], {}
    for schedule in ("ladder", "reference"):
        result, wall = _timed(device, lambda: minimal_epsilon(model, images, labels, schedule=schedule))
        results[schedule] = result
        rows.append(_row(f"search batched ({schedule})", images, labels, result.adversarial, result.fooled,
                         result.attacked, result.backward_passes, result.forward_passes, wall))
    singles, wall = _timed(device, lambda: [minimal_epsilon(model, images[i : i + 1], labels[i : i + 1])
                                            for i in range(len(images))])
    eps = torch.cat([s.eps for s in singles])
    adversarial = torch.cat([s.adversarial for s in singles])
    rows.append(_row("search per image (ladder)", images, labels, adversarial, torch.cat([s.fooled for s in singles]),
                     torch.cat([s.attacked for s in singles]), torch.cat([s.backward_passes for s in singles]),
                     torch.cat([s.forward_passes for s in singles]), wall))
    batched = results["ladder"]
    both = torch.isfinite(eps) & torch.isfinite(batched.eps)
    same_outcome = torch.equal(torch.isfinite(eps), torch.isfinite(batched.eps))
    delta_norms = [(a - images).flatten(1).norm(dim=1) for a in (adversarial, batched.adversarial)]
    norm_gap = (delta_norms[0] - delta_norms[1]).abs().max().item()
    compare = {
        "speedup_batched_vs_per_image": rows[2]["wall_s"] / rows[0]["wall_s"],
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


def _min_norm_rows(model, images, labels, steps, device) -> list[dict]:
    """Each minimum-norm attack on the correctly classified images, timed alone (no clean pass, no check)."""
    with torch.no_grad():
        attacked = model(images).argmax(1) == labels
    x, y = images[attacked], labels[attacked]
    attacks = {f"ddn ours ({steps} steps)": lambda counted: ddn(counted, x, y, steps=steps)}
    if foolbox is not None:
        for name, attack in (("DDN", foolbox.attacks.DDNAttack(steps=steps)),
                             ("FMN", foolbox.attacks.L2FMNAttack(steps=steps))):
            attacks[f"foolbox {name} ({steps} steps)"] = lambda counted, attack=attack: attack.run(
                foolbox.PyTorchModel(_Counted(counted).eval(), bounds=(0, 1), device=images.device), x, y)
    rows = []
    for name, run in attacks.items():
        counter = CountingModel(model, len(x))
        adversarial, wall = _timed(device, lambda: run(counter))
        with torch.no_grad():
            fooled = model(adversarial).argmax(1) != y
        rows.append(_row(name, x, y, adversarial, fooled, torch.ones_like(fooled), counter.backward_passes,
                         counter.forward_passes, wall))
        rows[-1]["norms"] = (adversarial - x).flatten(1).norm(dim=1).where(fooled, math.nan).tolist()
    return rows


def _lite0_batch(device):
    photos = bundled_photos()
    images = torch.cat([photos.images, photos.images.flip(-1)])  # mirror images keep their labels
    return images.to(device), torch.cat([photos.labels, photos.labels]).to(device)


def _print_block(title: str, rows: list[dict], compare: dict) -> None:
    print(f"== {title}")
    print(f"  {'method':32s} {'median L2':>9s} {'fooled':>8s} {'grads/img':>9s} {'fwd/img':>8s} {'wall s':>8s}")
    for r in rows:
        print(f"  {r['method']:32s} {r['median_l2']:9.4f} {r['fooled']:>3d}/{r['attacked']:<4d} "
              f"{r['grads_per_image']:9.1f} {r['forwards_per_image']:8.1f} {r['wall_s']:8.2f}")
    speedup = compare["speedup_batched_vs_per_image"]
    print(f"  batched vs per image: {speedup:.2f}x faster (target >= 3x: {'met' if speedup >= 3 else 'MISSED'}), "
          f"eps identical: {compare['eps_identical']} ({compare['eps_differing_images']} images differ), "
          f"max |L2 norm difference| {compare['max_l2_norm_gap']:.1e}")
    print(f"  schedules: ladder fooled {compare['ladder_fooled']}, reference fooled {compare['reference_fooled']} "
          f"(ladder only {compare['ladder_only']}, reference only {compare['reference_only']}; "
          f"fooled at hi per the ladder {compare['ladder_fooled_at_hi']})")
    if "ddn_norm_ratio" in compare:
        ratio, wall = compare["ddn_norm_ratio"], compare["ddn_wall_ratio"]
        print(f"  ddn ours / foolbox DDN: median norm {ratio:.4f} (target within 2%: "
              f"{'met' if abs(ratio - 1) <= 0.02 else 'MISSED'}), wall {wall:.2f}x "
              f"(target <= 1: {'met' if wall <= 1 else 'MISSED'}); per image, ours / foolbox: median "
              f"{compare['ddn_per_image_ratio']['median']:.3f}, range {compare['ddn_per_image_ratio']['min']:.3f}"
              f"-{compare['ddn_per_image_ratio']['max']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--steps", type=int, default=100, help="DDN / FMN steps")
    parser.add_argument("--cnn-images", type=int, default=64)
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 convolutions and matmuls on CUDA (PyTorch's cuDNN default; off here, "
                             "since its batch-size-dependent rounding changes borderline search decisions)")
    parser.add_argument("--models", default="efficientnet_lite0_imagenet,tiny_cnn", help="comma-separated subset")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or DEFAULT_THREADS)
    device = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32

    cnn_images, cnn_labels = synthetic_images(args.cnn_images, seed=7)
    cases = {
        "efficientnet_lite0_imagenet": (lambda: load_efficientnet_lite0().to(device), lambda: _lite0_batch(device)),
        "tiny_cnn": (lambda: trained_cnn().to(device), lambda: (cnn_images.to(device), cnn_labels.to(device))),
    }
    report = {"device": str(device), "threads": torch.get_num_threads(), "steps": args.steps,
              "tf32": args.tf32, "foolbox": getattr(foolbox, "__version__", None), "models": {}}
    for name in args.models.split(","):
        if name not in cases:
            parser.error(f"--models: unknown {name!r}; choose from {sorted(cases)}")
        load, batch = cases[name]
        model = load()
        images, labels = batch()
        minimal_epsilon(model, images[:2], labels[:2], hi=0.5)  # warm-up
        rows, compare = _search_rows(model, images, labels, device)
        min_norm = _min_norm_rows(model, images, labels, args.steps, device)
        if len(min_norm) > 1:
            compare["ddn_norm_ratio"] = min_norm[0]["median_l2"] / min_norm[1]["median_l2"]
            compare["ddn_wall_ratio"] = min_norm[0]["wall_s"] / min_norm[1]["wall_s"]
            ratios = torch.tensor(min_norm[0]["norms"]) / torch.tensor(min_norm[1]["norms"])
            finite = ratios[torch.isfinite(ratios)]
            compare["ddn_per_image_ratio"] = {"median": finite.median().item(), "min": finite.min().item(),
                                              "max": finite.max().item()}
        rows += min_norm
        title = (f"{name}: {len(images)} images {tuple(images.shape[1:])}, {device}"
                 + (f", tf32 {'on' if args.tf32 else 'off'}" if device.type == "cuda" else "")
                 + f", {torch.get_num_threads()} threads")
        _print_block(title, rows, compare)
        report["models"][name] = {"images": len(images), "rows": rows, **compare}
    out = ROOT / "benchmarks" / "results" / "attacks.json"
    out.parent.mkdir(exist_ok=True)
    partial = out.with_suffix(".json.partial")
    partial.write_text(json.dumps(report, indent=2))
    os.replace(partial, out)


if __name__ == "__main__":
    main()
