"""Harmonize a timm model in a plain PyTorch loop, on one or several processes (torchrun, DDP).

    KERAS_BACKEND=torch torchrun --nproc-per-node 2 examples/train_timm_ddp.py \\
        --train 'clickme/train-*.tfrecords' --model resnet18 --num-classes 1000 --batch-size 32 --out run

ClickMe batches come from ``harmonization.inputs`` (no TensorFlow): each process reads its own
slice of every global batch, so N processes with batch B train as one process with batch N * B
(networks without batch norm give the same gradients; batch norm uses each process's statistics).
The loss is ``harmonization.torch_loss.harmonizer_loss``, the Keras Harmonizer's objective.
``--synthetic`` writes a small ClickMe-like set first (bright squares are the human maps). After the
first step, ``OUT/step.json`` holds the global batch's loss, the averaged gradients and whether
TensorFlow was loaded (it is not); at the end
rank 0 writes ``OUT/model.safetensors`` (docs/pytorch-training.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from harmonization.clickme import write_clickme  # noqa: E402
from harmonization.inputs import ClickMeInputs  # noqa: E402
from harmonization.inputs.torch_data import ClickMeBatches  # noqa: E402
from harmonization.torch_loss import harmonizer_loss  # noqa: E402


def synthetic_shards(folder: Path, n: int, size: int, num_classes: int) -> list[str]:
    """ClickMe-like shards: noisy images with one bright square, which is the human map."""
    rng = np.random.default_rng(0)
    examples = []
    for i in range(n):
        image = rng.uniform(0, 60, (size, size, 3)).astype(np.uint8)
        heatmap = np.zeros((size, size), np.uint8)
        top, left = rng.integers(0, size - size // 4, 2)
        image[top : top + size // 4, left : left + size // 4] = 220
        heatmap[top : top + size // 4, left : left + size // 4] = 255
        examples.append({"image": image, "heatmap": heatmap, "label": i % num_classes})
    return write_clickme(examples, folder, shard_size=16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", help="ClickMe training shards (path, folder or glob)")
    parser.add_argument("--synthetic", action="store_true", help="write and train on a small synthetic set")
    parser.add_argument("--model", default="test_convnext", help="timm model name (random initialisation)")
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8, help="per process")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--lambda-harmonization", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not args.train and not args.synthetic:
        parser.error("pass --train SHARDS or --synthetic")

    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    train = args.train
    if args.synthetic:
        train = str(out / "synthetic")
        if rank == 0:
            synthetic_shards(Path(train), 64, args.image_size + 8, args.num_classes)
        if distributed:
            dist.barrier()

    torch.manual_seed(args.seed)  # the same initial weights on every process
    network = timm.create_model(args.model, pretrained=False, num_classes=args.num_classes)
    for module in network.modules():  # torch's fused attention has no second derivative on CPU
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    network.to(device)
    model = DistributedDataParallel(network) if distributed else network
    optimizer = torch.optim.SGD(network.parameters(), lr=args.lr, momentum=0.9, nesterov=True)
    inputs = ClickMeInputs(train, "train", args.batch_size, args.image_size, args.num_classes, seed=args.seed)
    loader = DataLoader(ClickMeBatches(inputs, repeat=True), batch_size=None, num_workers=args.workers)

    for step, batch in zip(range(args.steps), loader):
        batch = {name: value.to(device) for name, value in batch.items()}
        terms = harmonizer_loss(
            model,
            batch["image"],
            batch["heatmap"],
            batch["label"],
            batch["token"],
            lambda_harmonization=args.lambda_harmonization,
        )
        optimizer.zero_grad()
        terms["loss"].backward()  # DDP averages the gradients over the processes
        loss = terms["loss"].detach().clone()
        if distributed:
            dist.all_reduce(loss)
        loss = float(loss) / world
        if step == 0 and rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            gradients = {
                name: p.grad.flatten().tolist() for name, p in network.named_parameters() if p.grad is not None
            }
            (out / "step.json").write_text(
                json.dumps({"loss": loss, "gradients": gradients, "tensorflow_loaded": "tensorflow" in sys.modules})
            )
        optimizer.step()
        if rank == 0:
            term = terms["harmonization"]  # None with --lambda-harmonization 0
            print(
                f"step {step}: loss {loss:.4f}, ce {terms['ce'].item():.4f}"
                + ("" if term is None else f", harmonization {term.item():.4f}"),
                flush=True,
            )
    if rank == 0:
        state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "timm_model": args.model})
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
