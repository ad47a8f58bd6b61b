"""The neural harmonizer as a ``keras.Model``: train any Keras network with plain ``fit``."""
from __future__ import annotations

import os

import keras
from keras import ops

from harmonization.batches import batch_tensors, one_hot_labels
from harmonization.files import temporary_path
from harmonization.loss import DEFAULT_LEVELS, decayed_variables
from harmonization.metrics import chance_threshold
from harmonization.models import BACKBONE, PREPROCESS, split_pixel_model
from harmonization.objective import objective_terms
from harmonization.saliency import TRAINING_SALIENCIES
from harmonization.training import backends

LAMBDA_SCHEDULES = ("adaptive", "linear")
GATE_DECAY = 0.9
"""Per-step decay of the running training accuracy that opens the adaptive schedule's gate."""


def _bilinear_layers(model: keras.layers.Layer) -> list[str]:
    found = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "interpolation", None) == "bilinear":
            found.append(layer.name)
        found += _bilinear_layers(layer)
    return found


def _named(layer: keras.layers.Layer, name: str, input_shape: tuple) -> keras.Model:
    if layer.name == name:
        return layer
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs), name=name)


@keras.saving.register_keras_serializable(package="harmonization")
class Harmonizer(keras.Model):
    """Cross-entropy + weight decay + lambda * harmonization term, trained with ``fit``.

    ``backbone`` is either a pixel model (from ``harmonization.models.build_model``: it holds its
    own "preprocess" and "backbone" parts, and ``preprocess`` stays None) or a network taking
    preprocessed images, with ``preprocess`` the Keras layer that maps [0, 255] RGB pixels to its
    input. Saliency is taken with respect to the preprocessed image (docs/method.md).

    Batches are dicts (docs/data-contracts.md): "image" (N, H, W, 3) in [0, 255], "heatmap"
    (N, H, W, 1), "label" (N,) int or (N, C) soft, optional "token" (N,). Logged per epoch:
    ``loss`` (the total), ``ce``, ``harmonization`` (the unweighted pyramid MSE; not logged in
    training when ``lambda_harmonization`` is 0, since the saliency pass is then skipped),
    ``accuracy``, and in training ``lambda`` (the mean effective harmonization weight of the
    epoch, when ``lambda_harmonization`` > 0); validation logs the same with the ``val_`` prefix. Put
    ``harmonization.evaluation.AlignmentCallback(val_data)`` first among the callbacks to log
    the logit and log-probability alignment too.

    Weight decay: ``lambda_weights`` * sum(w^2)/2 over trainable variables whose path holds none
    of ``harmonization.loss.WEIGHT_DECAY_EXCLUDE``. It trains on the TensorFlow, JAX and torch
    backends from this one objective (the steps: ``harmonization.training.backends``;
    docs/backends.md). Under a TF distribution strategy each replica's loss is divided by the
    replica count, so gradients are those of the global batch (batch norm still uses each
    replica's own statistics, as Keras does). On TF with lambda > 0, Grappler's arithmetic
    optimizer is turned off for the process (it breaks second-order gradients through
    ResNet50V2 in ``fit``).

    ``lambda_schedule`` says when the harmonization weight is applied (docs/harmonizer-schedule.md):

    - ``"adaptive"`` (the default): the weight waits for the classifier. It is 0 until the running
      training accuracy (an exponential average over steps, decay ``GATE_DECAY``, of the accuracy
      of the whole global batch, starting at chance) first reaches
      ``harmonization.metrics.chance_threshold(chance_classes)``, chance + 0.2 * (1 - chance); from
      that step it grows linearly to ``lambda_harmonization`` over ``lambda_ramp_steps`` steps
      (at once when 0), and stays there. Without it a network that needs more than the ramp to
      leave chance can be taken over by the harmonization term, which is invariant to the
      saliency's scale, and stay at chance for the whole run. The running accuracy and the step
      at which the gate opened are non-trainable variables of the Harmonizer, updated in
      ``train_step`` from counts summed over replicas (so every replica agrees), and saved and
      restored with its weights (``BackupAndRestore`` resumes with the gate as it was).
      ``chance_classes`` is the number of classes the training data hold (``run`` counts them);
      the head's width, the default, is only an upper bound: with a 1000-unit head on 4-class
      data chance is 1/4.
    - ``"linear"``: the weight grows linearly from 0 over the first ``lambda_ramp_steps``
      optimizer steps; with 0 steps it is the published recipe (no ramp).

    ``centered_logits``: take the training saliency of ``logit_y - mean(logits)`` instead of
    ``logit_y``. Use it when the network ends with a plain linear logits layer (the
    ``keras.applications`` zoo models): otherwise the network can satisfy the harmonization term
    by adding one human-map-shaped term to every class's logit, which softmax ignores, while it
    keeps classifying with a shortcut (docs/clickme-mini.md). It changes nothing for a network
    that ends with log-softmax (such as ``small_cnn``). The reference runs used plain logits.

    ``saliency``: the training map's channel reduction, ``"signed"`` (the published mean, the
    default) or ``"absolute"`` (the |gradient| max that human alignment ranks; no better on the
    robustness suite, docs/clickme-mini.md).

    ``pixel_model`` is the trained network as a pixel model; ``save_pixel_model`` writes it as a
    ``.keras`` file that loads with ``keras.saving.load_model`` and no project code.
    """

    def __init__(self, backbone: keras.Model, preprocess: keras.layers.Layer | None = None,
                 lambda_harmonization: float = 1.0, lambda_weights: float = 1e-5,
                 levels: int = DEFAULT_LEVELS, label_smoothing: float = 0.1,
                 centered_logits: bool = False, lambda_ramp_steps: int = 0,
                 lambda_schedule: str = "adaptive", saliency: str = "signed",
                 chance_classes: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if saliency not in TRAINING_SALIENCIES:
            raise ValueError(f"saliency must be one of {', '.join(TRAINING_SALIENCIES)}, got {saliency!r}")
        if lambda_schedule not in LAMBDA_SCHEDULES:
            raise ValueError(f"lambda_schedule must be one of {', '.join(LAMBDA_SCHEDULES)}, "
                             f"got {lambda_schedule!r}")
        if lambda_harmonization < 0 or lambda_weights < 0 or lambda_ramp_steps < 0:
            raise ValueError("lambda_harmonization, lambda_weights and lambda_ramp_steps must be "
                             f">= 0, got {lambda_harmonization}, {lambda_weights}, {lambda_ramp_steps}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if preprocess is None:
            if split_pixel_model(backbone) is None:
                raise ValueError(
                    f"model {backbone.name!r} has no '{PREPROCESS}' and '{BACKBONE}' parts: pass "
                    "preprocess=<Keras layer mapping [0, 255] pixels to the network's input> "
                    "(keras.layers.Identity() if the network takes raw pixels)")
            self.pixel_model = backbone
        else:
            shape = tuple(backbone.input_shape[1:])
            pixels = keras.Input(shape, name="pixels")
            self.pixel_model = keras.Model(
                pixels, _named(backbone, BACKBONE, shape)(_named(preprocess, PREPROCESS, shape)(pixels)),
                name=backbone.name)
        bilinear = _bilinear_layers(self.pixel_model.get_layer(BACKBONE))
        if bilinear and lambda_harmonization > 0:
            raise ValueError(
                f"bilinear resizing inside the network ({', '.join(bilinear)}) silently cuts the "
                "harmonization gradient (TensorFlow's ResizeBilinearGrad has no gradient): resize "
                "in the data pipeline instead")
        self.lambda_harmonization = float(lambda_harmonization)
        self.lambda_weights = float(lambda_weights)
        self.levels = int(levels)
        self.label_smoothing = float(label_smoothing)
        self.centered_logits = bool(centered_logits)
        self.saliency = saliency
        self.lambda_ramp_steps = int(lambda_ramp_steps)
        self.lambda_schedule = lambda_schedule
        self.num_classes = int(self.pixel_model.output_shape[-1])
        if chance_classes is not None and not 2 <= chance_classes <= self.num_classes:
            raise ValueError(f"chance_classes must be in [2, {self.num_classes}] (the head's width), "
                             f"got {chance_classes}")
        self.chance_classes = self.num_classes if chance_classes is None else int(chance_classes)
        if self.lambda_harmonization > 0 and keras.backend.backend() == "tensorflow":
            from harmonization.training.distribute import disable_arithmetic_optimization

            disable_arithmetic_optimization()
        if lambda_schedule == "adaptive":
            self._gate_threshold = chance_threshold(self.chance_classes)
            self._gate_accuracy = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(1.0 / self.chance_classes),
                trainable=False, aggregation="only_first_replica", name="gate_accuracy")
            self._gate_step = self.add_weight(
                shape=(), dtype="int64", initializer=keras.initializers.Constant(-1),
                trainable=False, aggregation="only_first_replica", name="gate_step")
        self._trackers = {name: keras.metrics.Mean(name=name)
                          for name in ("loss", "ce", "harmonization", "lambda")}
        self._trackers["accuracy"] = keras.metrics.CategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def preprocess(self) -> keras.layers.Layer:
        return self.pixel_model.get_layer(PREPROCESS)

    @property
    def backbone(self) -> keras.Model:
        return self.pixel_model.get_layer(BACKBONE)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return list(self._trackers.values())

    def call(self, inputs, training: bool = False):
        if isinstance(inputs, dict):
            inputs = inputs["image"]
        return self.pixel_model(inputs, training=training)

    def _unpack(self, batch: dict) -> tuple:
        images, heatmaps, labels, tokens = batch_tensors(batch, "Harmonizer")
        return images, heatmaps, one_hot_labels(labels, self.num_classes), tokens

    def _lambda(self, step=None):
        """The harmonization weight at optimizer step ``step`` (default: the current one)."""
        step = ops.cast(self.optimizer.iterations if step is None else step, "float32")
        if self.lambda_schedule == "adaptive":
            opened = ops.cast(self._gate_step, "float32")
            if not self.lambda_ramp_steps:
                return ops.where(opened >= 0, self.lambda_harmonization, 0.0)
            progress = ops.where(opened >= 0, (step - opened) / float(self.lambda_ramp_steps), 0.0)
        elif not self.lambda_ramp_steps:
            return ops.convert_to_tensor(self.lambda_harmonization, "float32")
        else:
            progress = step / float(self.lambda_ramp_steps)
        return self.lambda_harmonization * ops.minimum(1.0, progress)

    def _advance_gate(self, logits, labels) -> None:
        """Fold this step's global-batch accuracy into the running accuracy; open the gate once.

        Once the gate is open nothing is computed (the running accuracy then stays as it was),
        except that several ``tf.distribute`` replicas still sum their counts: a collective
        cannot sit in a conditional branch.
        """
        dtype = self._gate_step.dtype

        def counts():
            hits = ops.cast(ops.equal(ops.argmax(logits, -1), ops.argmax(labels, -1)), "float32")
            return backends.sum_over_replicas(
                ops.stack([ops.sum(hits), ops.cast(ops.shape(hits)[0], "float32")]))

        synced = counts() if backends.replicas_in_sync() > 1 else None

        def advance():
            hits, seen = ops.unstack(counts() if synced is None else synced)
            running = (GATE_DECAY * ops.convert_to_tensor(self._gate_accuracy)
                       + (1.0 - GATE_DECAY) * hits / ops.maximum(seen, 1.0))
            opened = ops.where(running >= self._gate_threshold,
                               ops.cast(self.optimizer.iterations, dtype), ops.cast(-1, dtype))
            return running, ops.cast(opened, dtype)

        def keep():
            return (ops.convert_to_tensor(self._gate_accuracy),
                    ops.convert_to_tensor(self._gate_step))

        running, opened = ops.cond(self._gate_step < 0, advance, keep)
        self._gate_accuracy.assign(running)
        self._gate_step.assign(opened)

    def _objective(self, images, heatmaps, labels, tokens, training: bool, harmonize: bool,
                   forward=None, step=None) -> dict:
        """Per-replica terms: logits, ce, harmonization (or None), lambda, total loss, updates.

        ``forward(inputs) -> (logits, updates)`` runs the backbone (default: a plain call, with
        no updates to return); ``step`` is the optimizer step for the lambda schedule.
        """
        if forward is None:
            def forward(inputs):
                return self.backbone(inputs, training=training), None

        return objective_terms(
            forward, self.preprocess(images, training=training), labels, heatmaps, tokens,
            decayed_variables(self.trainable_variables), harmonize=harmonize,
            lambda_harmonization=lambda: self._lambda(step), lambda_weights=self.lambda_weights,
            levels=self.levels, label_smoothing=self.label_smoothing,
            centered_logits=self.centered_logits, saliency=self.saliency)

    def _record(self, terms: dict, labels, names: tuple[str, ...]) -> dict:
        batch_size = ops.cast(ops.shape(labels)[0], "float32")
        logs = {}
        for name in names:
            if terms[name] is not None:
                # Weighted by the batch size: epoch values are per-sample means (a short last
                # batch counts for its size, and Keras's extra empty step does not count).
                self._trackers[name].update_state(terms[name], sample_weight=batch_size)
                logs[name] = self._trackers[name].result()
        self._trackers["accuracy"].update_state(labels, terms["logits"])
        logs["accuracy"] = self._trackers["accuracy"].result()
        return backends.for_reduction(logs)

    @property
    def _gated(self) -> bool:
        return self.lambda_schedule == "adaptive" and self.lambda_harmonization > 0

    def train_step(self, *args):
        """One optimizer step: ``(batch) -> logs`` on TensorFlow and torch, ``(state, batch) ->
        (logs, state)`` on JAX (the Keras trainers' signatures)."""
        return backends.train_step(self, *args)

    def test_step(self, *args):
        return backends.test_step(self, *args)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 averages a sample batch across replicas here, which fails under
        # MultiWorkerMirroredStrategy (tensorflow#72388). The Harmonizer is built at construction and has no
        # compiled losses or metrics, so only the optimizer remains to build: no data needed.
        if self._distribute_strategy is None:
            return
        with self.distribute_strategy.scope():
            self._symbolic_build()

    def save_pixel_model(self, path: str) -> str:
        """Write the pixel model to ``path`` (a ``.keras`` file), atomically; returns the path."""
        path = os.fspath(path)
        if not path.endswith(".keras"):
            raise ValueError(f"{path}: the pixel model is saved as a .keras file")
        with temporary_path(path, suffix=".keras") as partial:
            self.pixel_model.save(partial)
        return path

    def get_config(self) -> dict:
        return {
            "backbone": keras.saving.serialize_keras_object(self.pixel_model),
            "lambda_harmonization": self.lambda_harmonization,
            "lambda_weights": self.lambda_weights, "levels": self.levels,
            "label_smoothing": self.label_smoothing, "centered_logits": self.centered_logits,
            "lambda_ramp_steps": self.lambda_ramp_steps, "lambda_schedule": self.lambda_schedule,
            "saliency": self.saliency, "chance_classes": self.chance_classes, "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Harmonizer":
        config = {"lambda_schedule": "linear", **config}  # files saved before the schedule existed
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
