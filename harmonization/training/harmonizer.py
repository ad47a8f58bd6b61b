"""The neural harmonizer as a ``keras.Model``: train any Keras network with plain ``fit``."""

from __future__ import annotations

import os

import keras
from keras import ops

from harmonization.batches import batch_tensors, one_hot_labels
from harmonization.files import temporary_path
from harmonization.loss import DEFAULT_LEVELS, decayed_variables
from harmonization.metrics import chance_threshold
from harmonization.models import BACKBONE, PREPROCESS
from harmonization.objective import objective_terms
from harmonization.training import backends
from harmonization.training.harmonizer_settings import check_settings, harmonizer_arguments, harmonizer_config
from harmonization.training.network import pixel_model_of
from harmonization.training.schedule import gate_update, lambda_at


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
    of ``harmonization.loss.WEIGHT_DECAY_EXCLUDE``. One objective trains on the TensorFlow, JAX
    and torch backends (docs/backends.md); under a TF distribution strategy the gradients are
    those of the global batch. On TF with lambda > 0, Grappler's arithmetic optimizer is turned
    off for the process (it breaks second-order gradients through ResNet50V2 in ``fit``).

    ``lambda_schedule`` says when the harmonization weight is applied (docs/harmonizer-schedule.md):

    - ``"adaptive"`` (the default): the weight is 0 until the running training accuracy (an
      exponential average over steps, decay ``GATE_DECAY``, of the global batch's accuracy,
      starting at chance) first reaches ``harmonization.metrics.chance_threshold(chance_classes)``;
      from that step it grows linearly to ``lambda_harmonization`` over ``lambda_ramp_steps``
      steps (at once when 0). The running accuracy and the opening step are non-trainable
      variables, summed over replicas and saved with the weights. ``chance_classes``: the classes
      the training data hold (``run`` counts them; default the head's width, an upper bound).
    - ``"linear"``: the weight grows linearly from 0 over the first ``lambda_ramp_steps``
      optimizer steps; with 0 steps it is the published recipe (no ramp).

    ``centered_logits``: take the training saliency of ``logit_y - mean(logits)``, not
    ``logit_y``, for a network ending with plain linear logits (the ``keras.applications`` zoo),
    which can otherwise satisfy the term by adding one human-map-shaped term to every logit
    (docs/clickme-mini.md). The reference runs used plain logits.

    ``saliency``: the training map's channel reduction, ``"signed"`` (the published mean, the
    default) or ``"absolute"`` (the |gradient| max that human alignment ranks; no better on the
    robustness suite, docs/clickme-mini.md).

    ``pixel_model`` is the trained network as a pixel model; ``save_pixel_model`` writes it as a
    ``.keras`` file that loads with ``keras.saving.load_model`` and no project code.

    The step's pieces are public, as the seam that each backend's step
    (``harmonization.training.backends``) calls and a subclass may override: ``unpack_batch``;
    ``compute_terms`` (the objective and its terms, run inside the backend's differentiation);
    ``advance_gate`` when ``gated``; then the optimizer update; then ``record_logs``.
    """

    def __init__(
        self,
        backbone: keras.Model,
        preprocess: keras.layers.Layer | None = None,
        lambda_harmonization: float = 1.0,
        lambda_weights: float = 1e-5,
        levels: int = DEFAULT_LEVELS,
        label_smoothing: float = 0.1,
        centered_logits: bool = False,
        lambda_ramp_steps: int = 0,
        lambda_schedule: str = "adaptive",
        saliency: str = "signed",
        chance_classes: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_settings(
            lambda_harmonization, lambda_weights, label_smoothing, lambda_ramp_steps, lambda_schedule, saliency
        )
        self.pixel_model = pixel_model_of(backbone, preprocess, harmonized=lambda_harmonization > 0)
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
            raise ValueError(
                f"chance_classes must be in [2, {self.num_classes}] (the head's width), got {chance_classes}"
            )
        self.chance_classes = self.num_classes if chance_classes is None else int(chance_classes)
        if self.lambda_harmonization > 0 and keras.backend.backend() == "tensorflow":
            from harmonization.training.distribute import disable_arithmetic_optimization

            disable_arithmetic_optimization()
        if lambda_schedule == "adaptive":
            self._gate_threshold = chance_threshold(self.chance_classes)
            self._gate_accuracy = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(1.0 / self.chance_classes),
                trainable=False,
                aggregation="only_first_replica",
                name="gate_accuracy",
            )
            self._gate_step = self.add_weight(
                shape=(),
                dtype="int64",
                initializer=keras.initializers.Constant(-1),
                trainable=False,
                aggregation="only_first_replica",
                name="gate_step",
            )
        self._trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", "ce", "harmonization", "lambda")}
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

    # --- the step's pieces (the seam that harmonization.training.backends calls) ---------------

    def unpack_batch(self, batch: dict) -> tuple:
        """(images, heatmaps, labels as float (N, C), tokens) of a batch dict; tokens None: all."""
        images, heatmaps, labels, tokens = batch_tensors(batch, "Harmonizer")
        return images, heatmaps, one_hot_labels(labels, self.num_classes), tokens

    def harmonization_weight(self, step=None):
        """The harmonization weight (lambda) at optimizer step ``step`` (default: the current one)
        under ``lambda_schedule``, as a float32 scalar tensor."""
        step = self.optimizer.iterations if step is None else step
        opened = self._gate_step if self.lambda_schedule == "adaptive" else None
        return lambda_at(step, self.lambda_harmonization, self.lambda_ramp_steps, self.lambda_schedule, opened)

    @property
    def gated(self) -> bool:
        """Whether a training step calls ``advance_gate``: the adaptive schedule with lambda > 0."""
        return self.lambda_schedule == "adaptive" and self.lambda_harmonization > 0

    def advance_gate(self, logits, labels) -> None:
        """Fold this step's global-batch accuracy into the running accuracy; open the gate once.

        Call it in a training step after ``compute_terms``, with its logits and the one-hot labels.
        Once the gate is open nothing is computed (the running accuracy then stays as it was),
        except that several ``tf.distribute`` replicas still sum their counts: a collective
        cannot sit in a conditional branch.
        """
        dtype = self._gate_step.dtype

        def counts():
            hits = ops.cast(ops.equal(ops.argmax(logits, -1), ops.argmax(labels, -1)), "float32")
            return backends.sum_over_replicas(ops.stack([ops.sum(hits), ops.cast(ops.shape(hits)[0], "float32")]))

        synced = counts() if backends.replicas_in_sync() > 1 else None

        def advance():
            hits, seen = ops.unstack(counts() if synced is None else synced)
            return gate_update(
                ops.convert_to_tensor(self._gate_accuracy),
                hits,
                seen,
                self._gate_threshold,
                self.optimizer.iterations,
                dtype,
            )

        def keep():
            return (ops.convert_to_tensor(self._gate_accuracy), ops.convert_to_tensor(self._gate_step))

        running, opened = ops.cond(self._gate_step < 0, advance, keep)
        self._gate_accuracy.assign(running)
        self._gate_step.assign(opened)

    def compute_terms(
        self, images, heatmaps, labels, tokens, training: bool, harmonize: bool, forward=None, step=None
    ) -> dict:
        """The objective of one (per-replica) batch and its terms, as ``unpack_batch`` gives it:
        {"logits", "ce", "harmonization" (None unless ``harmonize``), "weight_decay", "lambda",
        "loss", "updates"} (``harmonization.objective.objective_terms``).

        The Harmonizer's ``compute_loss_and_updates``: a step differentiates ``terms["loss"]``
        with respect to the trainable variables; nothing here changes a variable.
        ``forward(inputs) -> (logits, updates)`` runs the backbone on preprocessed inputs (default:
        a plain call, no updates); ``step`` is the optimizer step for ``harmonization_weight``.
        """
        if forward is None:

            def forward(inputs):
                return self.backbone(inputs, training=training), None

        return objective_terms(
            forward,
            self.preprocess(images, training=training),
            labels,
            heatmaps,
            tokens,
            decayed_variables(self.trainable_variables),
            harmonize=harmonize,
            lambda_harmonization=lambda: self.harmonization_weight(step),
            lambda_weights=self.lambda_weights,
            levels=self.levels,
            label_smoothing=self.label_smoothing,
            centered_logits=self.centered_logits,
            saliency=self.saliency,
        )

    def record_logs(self, terms: dict, labels, names: tuple[str, ...]) -> dict:
        """Update the metrics ``names`` (and ``accuracy``) from ``compute_terms``'s ``terms``;
        returns the logs the step hands to Keras."""
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
        return harmonizer_config(self)

    @classmethod
    def from_config(cls, config: dict) -> Harmonizer:
        return cls(**harmonizer_arguments(cls, config))
