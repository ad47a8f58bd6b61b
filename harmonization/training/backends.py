"""The Harmonizer's training and test steps on each Keras backend (docs/backends.md).

Each step calls the Harmonizer's public step pieces, shared by every backend: ``unpack_batch``,
``compute_terms`` (the objective, with the lambda schedule), ``advance_gate`` when ``gated``, and
``record_logs``. Only the differentiation, with respect to the parameters (the
``*_parameter_gradients`` here; the saliency's input gradient is ``harmonization.saliency``'s),
and the state handling differ:

- TensorFlow: a ``tf.GradientTape`` around the objective, whose saliency takes an inner tape;
  each replica's loss is divided by the replica count under a ``tf.distribute`` strategy.
- JAX: stateless, as the Keras JAX trainer wants it. ``jax.value_and_grad`` over the trainable
  values of a function that runs the objective in a ``keras.StatelessScope``; its saliency is a
  ``jax.vjp`` of the backbone's ``stateless_call``, which returns the batch-norm updates as aux.
  Under ``keras.distribution.DataParallel`` the step is one SPMD program: means and the gate's
  counts run over the global batch, and so do batch-norm statistics.
- torch: ``torch.autograd.grad`` of the loss, whose saliency is taken with
  ``create_graph=True``.
"""

from __future__ import annotations

from typing import Any

import keras

TRAIN_LOGS = ("loss", "ce", "harmonization", "lambda")
TEST_LOGS = ("loss", "ce", "harmonization")
BACKENDS = ("tensorflow", "jax", "torch")


def _backend() -> str:
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(f"the Harmonizer trains on the {', '.join(BACKENDS)} backends, not on {backend!r}")
    return backend


def replicas_in_sync() -> int:
    """How many ``tf.distribute`` replicas run this step (1 off TensorFlow: a JAX SPMD step is one
    program over the global batch)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def sum_over_replicas(value):
    """``value`` summed over the ``tf.distribute`` replicas (unchanged with one)."""
    if replicas_in_sync() == 1:
        return value
    import tensorflow as tf

    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, value)


def for_reduction(logs: dict) -> dict:
    """Step logs as the backend's trainer can reduce them (TF multi-worker: (1,) tensors)."""
    if keras.backend.backend() != "tensorflow":
        return logs
    from harmonization.training.distribute import for_multi_worker_reduction

    return for_multi_worker_reduction(logs)


# --- TensorFlow and torch: stateful steps ----------------------------------------------------


def _tensorflow_parameter_gradients(model, batch) -> tuple[dict, Any, list]:
    import tensorflow as tf

    from harmonization.training.distribute import scale_for_replicas

    images, heatmaps, labels, tokens = model.unpack_batch(batch)
    with tf.GradientTape() as tape:
        terms = model.compute_terms(
            images, heatmaps, labels, tokens, training=True, harmonize=model.lambda_harmonization > 0
        )
        scaled = model.optimizer.scale_loss(scale_for_replicas(terms["loss"]))
    return terms, labels, tape.gradient(scaled, model.trainable_variables)


def _tensorflow_train(model, batch) -> dict:
    terms, labels, gradients = _tensorflow_parameter_gradients(model, batch)
    if model.gated:
        model.advance_gate(terms["logits"], labels)
    model.optimizer.apply(gradients, model.trainable_variables)
    return model.record_logs(terms, labels, TRAIN_LOGS)


def _torch_parameter_gradients(model, batch) -> tuple[dict, Any, list]:
    import torch

    images, heatmaps, labels, tokens = model.unpack_batch(batch)
    terms = model.compute_terms(
        images, heatmaps, labels, tokens, training=True, harmonize=model.lambda_harmonization > 0
    )
    gradients = torch.autograd.grad(
        model.optimizer.scale_loss(terms["loss"]), [v.value for v in model.trainable_variables], allow_unused=True
    )
    return _detached(terms), labels, list(gradients)


def _detached(terms: dict) -> dict:
    """The objective's terms cut from the autograd graph (for logging and the gate)."""
    import torch

    return {name: value.detach() if isinstance(value, torch.Tensor) else value for name, value in terms.items()}


def _torch_train(model, batch) -> dict:
    import torch

    terms, labels, gradients = _torch_parameter_gradients(model, batch)
    with torch.no_grad():
        if model.gated:
            model.advance_gate(terms["logits"], labels)
        model.optimizer.apply(gradients, model.trainable_variables)
    return model.record_logs(terms, labels, TRAIN_LOGS)


def _test_terms(model, batch) -> tuple[dict, Any]:
    images, heatmaps, labels, tokens = model.unpack_batch(batch)
    terms = model.compute_terms(images, heatmaps, labels, tokens, training=False, harmonize=True)
    return terms, labels


def _stateful_test(model, batch) -> dict:
    terms, labels = _test_terms(model, batch)
    return model.record_logs(terms, labels, TEST_LOGS)


def _torch_test(model, batch) -> dict:
    import torch

    with torch.enable_grad():  # the Keras torch trainer tests under no_grad; saliency needs grad
        terms, labels = _test_terms(model, batch)
    return model.record_logs(_detached(terms), labels, TEST_LOGS)


# --- JAX: stateless steps --------------------------------------------------------------------


def _current(scope: keras.StatelessScope, variable) -> Any:
    value = scope.get_current_value(variable)
    return variable.value if value is None else value


def _jax_terms(
    model, batch, trainable: list, non_trainable: list, optimizer: list | None, training: bool, step=None
) -> tuple[Any, tuple]:
    """(loss to differentiate, (terms, labels, new non-trainable values)), statelessly."""
    images, heatmaps, labels, tokens = model.unpack_batch(batch)
    mapping = list(zip(model.trainable_variables, trainable)) + list(zip(model.non_trainable_variables, non_trainable))
    if optimizer is not None:
        mapping += list(zip(model.optimizer.variables, optimizer))
    backbone = model.backbone
    with keras.StatelessScope(state_mapping=mapping) as scope:
        weights = [v.value for v in backbone.trainable_variables]
        states = [v.value for v in backbone.non_trainable_variables]

        def forward(inputs):
            return backbone.stateless_call(weights, states, inputs, training=training)

        terms = model.compute_terms(
            images,
            heatmaps,
            labels,
            tokens,
            training=training,
            harmonize=model.lambda_harmonization > 0 or not training,
            forward=forward,
            step=step,
        )
        for variable, value in zip(backbone.non_trainable_variables, terms.pop("updates")):
            variable.assign(value)
        if training and model.gated:
            model.advance_gate(terms["logits"], labels)
        loss = model.optimizer.scale_loss(terms["loss"]) if training else terms["loss"]
    return loss, (terms, labels, [_current(scope, v) for v in model.non_trainable_variables])


def _jax_record(model, metrics: list, terms: dict, labels, names: tuple[str, ...]):
    with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, metrics))) as scope:
        logs = model.record_logs(terms, labels, names)
    return logs, [_current(scope, v) for v in model.metrics_variables]


def _jax_parameter_gradients(
    model, batch, trainable: list, non_trainable: list, optimizer: list
) -> tuple[dict, Any, list, list]:
    import jax

    value_and_grad = jax.value_and_grad(
        lambda values: _jax_terms(model, batch, values, non_trainable, optimizer, True), has_aux=True
    )
    (_, (terms, labels, non_trainable)), gradients = value_and_grad(trainable)
    return terms, labels, non_trainable, gradients


def _jax_train(model, state: tuple, batch) -> tuple[dict, tuple]:
    trainable, non_trainable, optimizer, metrics = state
    terms, labels, non_trainable, gradients = _jax_parameter_gradients(
        model, batch, trainable, non_trainable, optimizer
    )
    trainable, optimizer = model.optimizer.stateless_apply(optimizer, gradients, trainable)
    logs, metrics = _jax_record(model, metrics, terms, labels, TRAIN_LOGS)
    return logs, (trainable, non_trainable, optimizer, metrics)


def _jax_iterations(model):
    """The optimizer's step count, read when the compiled test step runs (the Keras JAX test
    state holds no optimizer variables, and a value read while tracing would stay fixed)."""
    import jax
    import numpy as np

    iterations = model.optimizer.iterations
    return jax.pure_callback(
        lambda: np.asarray(iterations.numpy(), iterations.dtype), jax.ShapeDtypeStruct((), iterations.dtype)
    )


def _jax_test(model, state: tuple, batch) -> tuple[dict, tuple]:
    trainable, non_trainable, metrics = state
    step = _jax_iterations(model) if model.lambda_ramp_steps else None
    _, (terms, labels, non_trainable) = _jax_terms(model, batch, trainable, non_trainable, None, False, step)
    logs, metrics = _jax_record(model, metrics, terms, labels, TEST_LOGS)
    return logs, (trainable, non_trainable, metrics)


_TRAIN = {"tensorflow": _tensorflow_train, "jax": _jax_train, "torch": _torch_train}
_TEST = {"tensorflow": _stateful_test, "jax": _jax_test, "torch": _torch_test}


def loss_and_parameter_gradients(model, batch) -> tuple[Any, list]:
    """The training loss of ``batch`` and its gradient for each of ``model.trainable_variables``
    (None where it has none), as ``train_step`` computes them, without taking the step or
    advancing the gate. The forward pass is in training mode: on TensorFlow and torch it moves
    batch-norm moving statistics as a step would. The model must be compiled, its optimizer built.
    On JAX it is compiled as the train step is (``jax.jit``): run op by op, the second-order
    saliency pass takes several times longer."""
    backend = _backend()
    if backend == "jax":
        import jax

        state = [
            [v.value for v in variables]
            for variables in (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables)
        ]
        compiled = jax.jit(lambda batch, *state: _jax_parameter_gradients(model, batch, *state))
        terms, _, _, gradients = compiled(batch, *state)
        return terms["loss"], list(gradients)
    if backend == "torch":
        terms, _, gradients = _torch_parameter_gradients(model, batch)
        return terms["loss"], gradients
    terms, _, gradients = _tensorflow_parameter_gradients(model, batch)
    return terms["loss"], list(gradients)


def train_step(model, *args):
    """The active backend's training step (``Harmonizer.train_step``)."""
    return _TRAIN[_backend()](model, *args)


def test_step(model, *args):
    """The active backend's test step (``Harmonizer.test_step``)."""
    return _TEST[_backend()](model, *args)
