"""Pick a distribution strategy, and the library-side fixes that distributed harmonizing needs.

TensorFlow is imported by the functions that use it, not by this module: a run on the JAX or
torch backend (``keras_distribution``, ``worker_count``) never loads it."""

from __future__ import annotations

import glob
import json
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)


def _tpu_name(tpu: str | None) -> str | None:
    """The TPU to resolve: the argument, else what the environment names, else None (no TPU)."""
    if tpu:
        return tpu
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"]
    if os.environ.get("COLAB_TPU_ADDR"):  # Colab TPU node runtime
        return "grpc://" + os.environ["COLAB_TPU_ADDR"]
    if glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):  # TPU VM (Colab, Cloud)
        return "local"
    return None


def _tpu_strategy(name: str) -> tf.distribute.Strategy:
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
    if name != "local":
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def worker_count(tf_config: str | None = None) -> int:
    """How many tasks (chief and workers) the ``TF_CONFIG`` cluster spec names (0 when unset)."""
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw.strip():
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is not a JSON object: {error}") from None
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def strategy(tpu: str | None = None) -> tf.distribute.Strategy:
    """The strategy for this machine, in order of preference.

    1. ``TPUStrategy`` when a TPU resolves (``tpu`` argument, ``TPU_NAME``, ``COLAB_TPU_ADDR`` or
       a TPU VM's devices); a TPU that is named but fails to resolve raises only if ``tpu`` was
       passed explicitly.
    2. ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several workers (checked before
       GPUs, so that a cluster of GPU machines trains as one); create it at program start,
       before any other TensorFlow operation (a TensorFlow requirement for collectives).
    3. ``MirroredStrategy`` over the visible GPUs when there are at least two.
    4. The default strategy (one CPU or one GPU).
    """
    import tensorflow as tf

    name = _tpu_name(tpu)
    if name is not None:
        try:
            return _tpu_strategy(name)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            if tpu:
                raise
            log.warning("TPU %s did not resolve (%s); not using a TPU", name, error)
    if worker_count() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether ``strategy`` synchronises several workers (processes) with collectives."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def for_multi_worker_reduction(logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Step logs shaped so that Keras 3 can reduce them across workers.

    Under a multi-worker strategy Keras 3.15 averages each log with ``reduce(axis=0)``, which
    fails on scalars (tensorflow#72388); as (1,) tensors they reduce to the same scalars.
    Elsewhere the logs are returned unchanged.
    """
    import tensorflow as tf

    if not is_multi_worker(tf.distribute.get_strategy()):
        return logs
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}


def scale_for_replicas(loss: tf.Tensor) -> tf.Tensor:
    """Divide a per-replica mean loss by the replica count (docs/traps.md, "Loss under a strategy").

    Gradients of the replicas are summed when applied, so each replica's loss must be its local
    mean divided by the number of replicas for the sum to equal the global-batch gradient.
    """
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss


def disable_arithmetic_optimization() -> None:
    """Turn off Grappler's arithmetic optimizer, process-wide (docs/traps.md, "Grappler and double backprop").

    Second-order gradients through ResNet50V2 inside ``fit`` otherwise fail with
    ``AlreadyExistsError ... AddN_*/tmp_var``. XLA-compiled steps are not affected.
    """
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})


def keras_distribution(backend: str) -> int:
    """Devices a run on a non-TensorFlow ``backend`` trains on, after setting its Keras distribution.

    JAX: a ``keras.distribution.DataParallel`` over every device when there are several (each batch
    split across them, gradients averaged), unless a distribution is already set. torch: one device
    (Keras has no torch distribution).
    """
    import keras

    if backend != "jax":
        return 1
    import jax

    devices = jax.devices()
    if len(devices) > 1 and keras.distribution.distribution() is None:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)
