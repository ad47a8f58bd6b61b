"""Human alignment of a Keras model on ClickMe-style data (docs/method.md, "Human-alignment
evaluation").

Saliency is |d score / d preprocessed input|, max over channels, for two scores: the true-class
logit (the published measure) and the true-class log-probability. A network can raise its logit
alignment without changing what it classifies with, by adding one object-shaped term to every
class's logit (softmax ignores it); the log-probability saliency is blind to that term. A model
whose logit alignment exceeds its log-probability alignment by more than ``GAMING_MARGIN`` is
flagged as ``gaming``. A model whose accuracy is near chance (``harmonization.metrics.near_chance``)
is flagged as ``near_chance``: its alignment numbers say nothing about a trained model. Chance is
taken from the classes present in the evaluated labels (a 100-unit head on 4-class data is at
chance at 0.25). A softmax head is evaluated before its softmax where its last layer applies it
(``harmonization.heads``); otherwise ``saliency_of_logits`` is False. (A log-softmax head gives
logits: its logit and log-probability saliencies are equal by design.)
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from harmonization import heads
from harmonization.alignment import GAMING_MARGIN, alignment_result, output_activation, per_image_alignment
from harmonization.batches import batch_tensors, class_indices
from harmonization.clickme2.denominator import Denominator
from harmonization.models import split_pixel_model
from harmonization.saliency import evaluation_saliency


def _parts(model: keras.Model, preprocess: Callable | None) -> tuple[Callable, keras.Model]:
    if preprocess is not None:
        return preprocess, model
    parts = split_pixel_model(model)
    if parts is None:
        raise ValueError(
            f"model {model.name!r} has no 'preprocess' part, so its preprocessing is unknown: pass "
            "preprocess=<callable mapping [0, 255] pixels to the model's input> "
            "(lambda x: x if the model takes raw pixels)"
        )
    return parts


def _batch_arrays(batch: dict) -> tuple:
    """(images, heatmaps, labels, tokens): images float32 and class-index labels as backend
    tensors; heatmaps (N, H, W) float32 and tokens as numpy arrays."""
    images, heatmaps, labels, tokens = batch_tensors(batch, "evaluation")
    heatmaps = _numpy(heatmaps)
    if heatmaps.ndim == 4:
        heatmaps = heatmaps[..., 0]
    return images, heatmaps, class_indices(labels), _numpy(tokens)


class ClickMeEvaluator:
    """Evaluates one model on any number of datasets, tracing its saliency function once.

    ``model``: a pixel model (its own "preprocess" part is used, the default) or a Harmonizer;
    or any Keras network with ``preprocess`` the callable that maps [0, 255] pixels to its input.
    """

    def __init__(self, model: keras.Model, preprocess: Callable | None = None):
        model = getattr(model, "pixel_model", model)  # a Harmonizer evaluates its pixel model
        _check_model(model)
        preprocess, network = _parts(model, preprocess)
        self._name = model.name
        self._input_size = _input_size(model)
        self._head, layer = heads.head_activation(network)
        self._opened = heads.can_open(layer)
        self._saliency = saliency_function(network, preprocess, layer if self._opened else None)

    def _check_size(self, images) -> None:
        size = tuple(images.shape[1:3])
        if self._input_size is not None and size != self._input_size:
            raise ValueError(
                f"images are {size[0]}x{size[1]} pixels but model {self._name!r} takes "
                f"{self._input_size[0]}x{self._input_size[1]}"
            )

    def __call__(
        self,
        dataset,
        gaming_margin: float = GAMING_MARGIN,
        max_batches: int | None = None,
        percentile: float = 10,
        denominator: Denominator | None = None,
    ) -> dict:
        """The results of ``evaluate_clickme`` for ``dataset``."""
        collected: dict[str, list[np.ndarray]] = {
            k: [] for k in ("logit", "log_prob", "heatmap", "correct", "label", "position")
        }
        seen: set[str | None] = set()
        for index, batch in enumerate(dataset):
            if max_batches is not None and index >= max_batches:
                break
            images, heatmaps, labels, tokens = _batch_arrays(batch)
            self._check_size(images)
            logit_maps, log_prob_maps, outputs = self._saliency(images, labels)
            outputs = _numpy(outputs)
            seen.add(output_activation(outputs))
            if logit_maps.shape[1:] != heatmaps.shape[1:]:
                raise ValueError(
                    f"saliency maps {tuple(logit_maps.shape[1:])} and heatmaps {heatmaps.shape[1:]} differ in size"
                )
            mapped = tokens > 0
            collected["position"].append(sum(map(len, collected["correct"])) + np.flatnonzero(mapped))
            collected["label"].append(_numpy(labels))
            collected["correct"].append(outputs.argmax(-1) == collected["label"][-1])
            collected["logit"].append(_numpy(logit_maps)[mapped])
            collected["log_prob"].append(_numpy(log_prob_maps)[mapped])
            collected["heatmap"].append(heatmaps[mapped])
        if not collected["correct"]:
            raise ValueError("the evaluation dataset is empty")
        arrays = {k: np.concatenate(v) for k, v in collected.items()}
        denominator = denominator or Denominator()
        if max_batches is None:
            denominator.check_count(arrays["correct"].size)
        per_image = per_image_alignment(arrays["logit"], arrays["log_prob"], arrays["heatmap"], percentile)
        result = alignment_result(
            per_image,
            arrays["correct"],
            int(outputs.shape[-1]),
            gaming_margin,
            denominator,
            arrays["position"],
            labels=arrays["label"],
        )
        result.update(self._head_fields(seen.pop() if len(seen) == 1 else None))
        return result

    def _head_fields(self, seen: str | None) -> dict:
        """``head_activation`` (None, "softmax", "log_softmax": what the model's outputs are) and
        ``saliency_of_logits`` (False: the saliencies were taken after a softmax, so the logit
        saliency and the gaming check do not mean what they say; a log-softmax gives logits)."""
        head = self._head or seen
        return {"head_activation": head, "saliency_of_logits": self._opened or head != "softmax"}


def _numpy(tensor) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(tensor))


def _check_model(model: keras.Model) -> None:
    """Refuse, in one line, a model that cannot be evaluated on ClickMe's RGB images."""
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) > 1:
        raise ValueError(
            f"model {model.name!r} has {len(outputs)} outputs: the evaluation takes a "
            "classifier with one output of class scores"
        )
    try:
        shape = tuple(model.input_shape)
    except (AttributeError, ValueError):
        return
    if len(shape) == 4 and shape[-1] not in (None, 3):
        raise ValueError(f"model {model.name!r} takes {shape[-1]}-channel images: ClickMe images are RGB (3 channels)")


def saliency_function(network: keras.Model, preprocess: Callable, head: keras.layers.Layer | None = None) -> Callable:
    """(images, labels) -> (logit maps, log-prob maps, outputs (N, classes)).

    ``head``: a last layer whose (softmax) activation is set to the identity while the saliency
    is taken (``harmonization.heads.linear_head``), so that it is that of the logits.

    TensorFlow: one ``tf.function`` (traced once per shape; TensorFlow is imported on that
    backend only). JAX: ``jax.jit`` of the network's
    ``stateless_call`` on its current variables, passed at each call (so that a trained network
    is evaluated with its new weights). torch: eager, with autograd enabled (Keras's evaluation
    loop runs under ``torch.no_grad``).
    """
    backend = keras.backend.backend()

    def compute(net, images, labels):
        with heads.linear_head(head):
            maps, logits = evaluation_saliency(net, preprocess(keras.ops.convert_to_tensor(images)), labels)
        return maps["logit"], maps["log_prob"], logits

    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda images, labels: compute(network, images, labels), reduce_retracing=True)
    if backend == "jax":
        import jax

        @jax.jit
        def stateless(trainable, non_trainable, images, labels):
            def net(x, training=False):
                return network.stateless_call(trainable, non_trainable, x, training=training)[0]

            return compute(net, images, labels)

        def saliency(images, labels):
            return stateless(
                [v.value for v in network.trainable_variables],
                [v.value for v in network.non_trainable_variables],
                images,
                labels,
            )

        return saliency
    if backend == "torch":
        import torch

        def saliency(images, labels):
            with torch.enable_grad():
                return compute(network, images, labels)

        return saliency
    raise NotImplementedError(f"evaluate_clickme runs on tensorflow, jax and torch, not {backend!r}")


def _input_size(model: keras.Model) -> tuple[int, int] | None:
    """The (height, width) a model takes, or None when it accepts any size."""
    try:
        shape = tuple(model.input_shape)
    except (AttributeError, ValueError):
        return None
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        return None
    return int(shape[1]), int(shape[2])


def public(result: dict) -> dict:
    """An ``evaluate_clickme`` result without its per-image arrays (for JSON)."""
    return {key: value for key, value in result.items() if key != "per_image"}


def evaluate_clickme(
    model: keras.Model,
    dataset,
    preprocess: Callable | None = None,
    gaming_margin: float = GAMING_MARGIN,
    max_batches: int | None = None,
    percentile: float = 10,
    denominator: Denominator | None = None,
) -> dict:
    """Accuracy and human alignment of ``model`` on a dataset of ClickMe dict batches.

    ``model``: a pixel model (its own "preprocess" part is used, the default) or a Harmonizer; or
    any Keras network with ``preprocess`` the callable that maps [0, 255] pixels to its input.
    Alignment is measured on images with a human map (token > 0); Dice and IoU compare the top
    ``percentile`` % pixels of the logit saliency and of the human map.

    Returns a dict: ``accuracy``, ``num_classes`` (the classes chance is taken from: those present
    in the evaluated labels, at most ``head_classes``, the width of the model's head),
    ``head_classes``, ``head_wider_than_data``, ``near_chance`` (accuracy below
    ``chance_threshold``, ``harmonization.metrics.chance_threshold``: the alignment numbers are
    then unreliable), ``chance_threshold``, ``head_activation`` and ``saliency_of_logits``
    (``ClickMeEvaluator``; False flags saliencies taken after a softmax), ``count``, ``mapped``
    (images with a map), ``spearman`` and
    ``spearman_log_prob`` (``metrics.summarize`` dicts), ``alignment_score`` and
    ``alignment_score_log_prob`` (mean Spearman / human ceiling: ``denominator``, default the
    constant 0.65753, or a measured ceiling, ``harmonization.clickme2.denominator``),
    ``denominator`` (which one: kind, value, source), ``dice``, ``iou``,
    ``gaming_gap`` (mean Spearman logit minus log-prob), ``gaming`` (gap > ``gaming_margin``),
    ``gaming_margin``, and ``per_image`` (numpy arrays: spearman, spearman_log_prob, dice, iou
    over mapped images; correct over all images).
    """
    return ClickMeEvaluator(model, preprocess)(dataset, gaming_margin, max_batches, percentile, denominator)


class AlignmentCallback(keras.callbacks.Callback):
    """Adds ``{prefix}alignment``, ``{prefix}alignment_log_prob`` and ``{prefix}gaming_gap`` to
    the epoch logs (so History, CSVLogger and TensorBoard see them when this callback comes
    first), from ``evaluate_clickme`` on ``dataset`` at the end of each epoch."""

    def __init__(self, dataset, max_batches: int | None = None, prefix: str = "val_"):
        super().__init__()
        self.dataset = dataset
        self.max_batches = max_batches
        self.prefix = prefix
        self._evaluator: ClickMeEvaluator | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        if self._evaluator is None:
            self._evaluator = ClickMeEvaluator(self.model)
        result = self._evaluator(self.dataset, max_batches=self.max_batches)
        logs[f"{self.prefix}alignment"] = result["alignment_score"]
        logs[f"{self.prefix}alignment_log_prob"] = result["alignment_score_log_prob"]
        logs[f"{self.prefix}gaming_gap"] = result["gaming_gap"]
