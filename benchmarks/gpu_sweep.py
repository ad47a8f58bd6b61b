"""GPU sweep speed: the minimal L2 PGD search on timm resnet50 and vit_base_patch16_224, with and without
channels_last, torch.compile and bf16 autocast.

1000 synthetic 224 px stimuli per model (random weights, 10 classes, the model's own predictions as
labels), the library's default search schedule (``--schedule`` picks another). Reports per
configuration: images per second, seconds per 1000 images, peak GPU memory, the share of wall time
outside the model passes (the counted forward and backward passes times the measured cost of one
of each on a full batch; not clipped, so a negative share shows the estimate is off), passes per
image, and whether eps agrees with the fp32 run within the ladder's tolerance (an option that changes
results is reported as such). Target on one H200: a 1000-image resnet50 sweep in under 60 s,
evaluated for every resnet50 row of a run that can decide it (>= 1000 images on an H200; other runs
print "not evaluated"). Needs torch and timm, not TensorFlow (nothing here imports
it). Without a CUDA device it says so and exits 0, unless ``--device cpu`` asks for a CPU run (a
tiny one, e.g. ``--device cpu --images 8 --models test_resnet``, checks the script end to end).
Writes benchmarks/results/gpu_sweep.json. Run: python benchmarks/gpu_sweep.py [--images 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import pathlib
import sys
import time

import torch

from attacks_torch.attacks.schedules import ladder_rungs
from attacks_torch.models import load_model
from attacks_torch.search import SCHEDULES, minimal_epsilon
from harmonization.files import write_json

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> (channels_last, torch.compile, bf16 autocast)
    "fp32": (False, False, False),
    "channels_last": (True, False, False),
    "compile": (False, True, False),
    "bf16": (False, False, True),
    "channels_last+compile+bf16": (True, True, True),
}


class Configured(torch.nn.Module):
    """The model fed channels_last inputs and/or run under bf16 autocast; logits back in fp32."""

    def __init__(self, model: torch.nn.Module, device: torch.device, channels_last: bool, bf16: bool) -> None:
        super().__init__()
        self.model, self.device, self.channels_last, self.bf16 = model, device, channels_last, bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with autocast:
            return self.model(x).float()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pass_seconds(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device, repeats: int = 3
) -> tuple[float, float]:
    """Seconds per image of one forward pass, and of one forward and backward pass (input gradient)."""
    timings = []
    for with_grad in (False, True):
        began = None
        for repeat in range(repeats + 1):  # the first round warms up
            if repeat == 1:
                _sync(device)
                began = time.perf_counter()
            x = images.detach().requires_grad_(with_grad)
            with torch.set_grad_enabled(with_grad):
                loss = torch.nn.functional.cross_entropy(model(x), labels)
                if with_grad:
                    torch.autograd.grad(loss, x)
        _sync(device)
        timings.append((time.perf_counter() - began) / repeats / len(images))
    return timings[0], timings[1]


def _stimuli(n: int, size: int, device: torch.device) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)


def _tolerance(eps: torch.Tensor) -> torch.Tensor:
    rungs = ladder_rungs(10.0, 10.0 / 64)
    return torch.tensor(
        [0.01 * min(r for r in rungs if r >= e * (1 - 1e-9)) if math.isfinite(e) else math.nan for e in eps.tolist()],
        dtype=torch.float64,
    )


def _run(name: str, config: str, images: torch.Tensor, batch_size: int, device: torch.device, schedule: str) -> dict:
    channels_last, compiled, bf16 = CONFIGS[config]
    model = load_model(name, weights="random", num_classes=10, seed=0).eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    network = Configured(torch.compile(model) if compiled else model, device, channels_last, bf16)
    with torch.no_grad():
        labels = torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])  # fp32 labels
    minimal_epsilon(
        network, images[:batch_size], labels[:batch_size], batch_size=batch_size, schedule=schedule
    )  # warm-up, and compilation
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    began = time.perf_counter()
    result = minimal_epsilon(network, images, labels, batch_size=batch_size, schedule=schedule)
    _sync(device)
    wall = time.perf_counter() - began
    forward_s, forward_backward_s = _pass_seconds(network, images[:batch_size], labels[:batch_size], device)
    forwards, backwards = int(result.forward_passes.sum()), int(result.backward_passes.sum())
    model_s = (forwards - backwards) * forward_s + backwards * forward_backward_s
    n = len(images)
    return {
        "model": name,
        "config": config,
        "schedule": schedule,
        "images": n,
        "batch_size": batch_size,
        "wall_s": wall,
        "images_per_s": n / wall,
        "s_per_1000_images": wall * 1000 / n,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        # not clipped: below 0 means the passes timed alone cost more than inside the sweep (timing noise,
        # or batches the sweep ran smaller than a full one), and the estimate is not to be trusted
        "share_outside_model_passes": 1 - model_s / wall,
        "forward_per_image": forwards / n,
        "backward_per_image": backwards / n,
        "fooled": int(result.fooled.sum()),
        "attacked": int(result.attacked.sum()),
        "eps": result.eps.tolist(),
    }


def _agreement(row: dict, reference: dict) -> dict:
    eps, base = torch.tensor(row["eps"], dtype=torch.float64), torch.tensor(reference["eps"], dtype=torch.float64)
    fooled, base_fooled = torch.isfinite(eps), torch.isfinite(base)
    both = fooled & base_fooled
    differing = int((fooled != base_fooled).sum() + ((eps - base).abs()[both] > _tolerance(base)[both]).sum())
    return {"images_differing_from_fp32": differing, "changes_results": differing > 0}


TARGET = {"model": "resnet50", "images": 1000, "s_per_1000_images_below": 60.0, "device": "H200"}


def _target(row: dict, device_name: str) -> str:
    """The stated target, evaluated where this run can decide it: resnet50, >= 1000 images, on an H200."""
    if row["model"] != TARGET["model"]:
        return ""
    if row["images"] < TARGET["images"] or TARGET["device"] not in device_name:
        row["target_met"] = None
        return (
            f"target (1000-image resnet50 sweep under 60 s on one H200): not evaluated "
            f"({row['images']} images on {device_name})"
        )
    row["target_met"] = row["s_per_1000_images"] < TARGET["s_per_1000_images_below"]
    return f"target (under 60 s per 1000 images on one H200): {'met' if row['target_met'] else 'MISSED'}"


def _verdict(row: dict) -> str:
    if "changes_results" not in row:
        return ""
    if row["changes_results"]:
        return f"changes results ({row['images_differing_from_fp32']} images)"
    return "same eps as fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--size", type=int, default=224, help="stimulus side in pixels")
    parser.add_argument("--models", default="resnet50,vit_base_patch16_224")
    parser.add_argument(
        "--schedule",
        default=inspect.signature(minimal_epsilon).parameters["schedule"].default,
        choices=SCHEDULES,
        help="search schedule (default: the library's)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_sweep: no CUDA device here; skipped (pass --device cpu for a small CPU check)")
        return
    configs = args.configs.split(",")
    for config in configs:
        if config not in CONFIGS:
            parser.error(f"--configs: unknown {config!r}; choose from {', '.join(CONFIGS)}")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    images = _stimuli(args.images, args.size, device)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "images": args.images,
        "size": args.size,
        "target": TARGET,
        "rows": [],
    }
    out = ROOT / "benchmarks" / "results" / "gpu_sweep.json"
    for name in args.models.split(","):
        reference = None
        for config in configs:
            row = _run(name, config, images, min(args.batch_size, args.images), device, args.schedule)
            reference = reference or (row if config == "fp32" else None)
            if reference is not None:
                row.update(_agreement(row, reference))
            report["rows"].append(row)
            write_json(out, report)  # after every configuration: a crash keeps what was measured
            print(
                f"{name:24s} {config:28s} {row['images_per_s']:8.1f} img/s {row['s_per_1000_images']:8.1f} s/1000 "
                f"outside model passes {row['share_outside_model_passes']:.0%} "
                f"{row['forward_per_image']:.1f} fwd + {row['backward_per_image']:.1f} bwd/img "
                f"peak {row['peak_gpu_memory_gib'] or 0:.1f} GiB "
                f"{_verdict(row)} {_target(row, report['device'])}".rstrip(),
                flush=True,
            )
            write_json(out, report)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
