"""A data-contract batch (docs/data-contracts.md, "Training batches") as backend tensors, on any backend."""

from __future__ import annotations

from keras import ops

BATCH_KEYS = ("image", "heatmap", "label")


def batch_tensors(batch: dict, user: str) -> tuple:
    """(images, heatmaps, labels, tokens) of ``batch`` as tensors of the current Keras backend.

    images and heatmaps float32 as given; labels as given (class indices (N,) or one-hot / soft
    (N, C)); tokens float32 (N,), 1 where the batch has no "token". ``user`` names the caller in
    the error for a batch that is not a dict with the contract's keys.
    """
    if not isinstance(batch, dict) or not set(BATCH_KEYS) <= set(batch):
        keys = f" {sorted(batch)}" if isinstance(batch, dict) else ""
        raise ValueError(
            f"{user} batches are dicts with keys {', '.join(BATCH_KEYS)} "
            f"(and optionally token); got {type(batch).__name__}{keys}"
        )
    images = ops.cast(batch["image"], "float32")
    tokens = batch.get("token")
    tokens = ops.ones(ops.shape(images)[:1], "float32") if tokens is None else ops.cast(tokens, "float32")
    return (images, ops.cast(batch["heatmap"], "float32"), ops.convert_to_tensor(batch["label"]), tokens)


def one_hot_labels(labels, num_classes: int):
    """float32 (N, C) targets from class indices (N,) or one-hot / soft labels (N, C)."""
    if len(labels.shape) == 1:
        labels = ops.one_hot(ops.cast(labels, "int32"), num_classes)
    return ops.cast(labels, "float32")


def class_indices(labels):
    """int32 (N,) classes from class indices (N,) or one-hot / soft labels (N, C) (their argmax)."""
    if len(labels.shape) == 2:
        labels = ops.argmax(labels, -1)
    return ops.cast(labels, "int32")
