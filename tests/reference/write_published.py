"""Write random-weight files in the published harmonized-zoo formats with the reference constructors.

Run by the tests and the benchmark in a subprocess with the legacy stack:
``TF_USE_LEGACY_KERAS=1 PYTHONPATH=.reference-env:tests/reference/shims python
tests/reference/write_published.py OUT NAME...``. For each NAME it writes ``OUT/NAME.h5`` in the
published format (a weights-only ``save_weights`` file for vit_b16 and the kecam models, a
full-model ``save`` for vgg16, resnet50v2, resnet50 and efficientnetb0), and ``OUT/NAME.pixels.npy`` / ``OUT/NAME.logits.npy``:
images in [0, 255] and the reference model's logits on them, with the published preprocessing
(x / 255, ImageNet mean / std) applied once here in numpy. ``--full`` builds the published sizes
(224 px, ViT-B/16 with 12 blocks); the default is a small, fast stand-in of the same constructor
(32 px; ViT-B/16 with 2 blocks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
CLASSES = 1000


def vit_b16(image_size: int, full: bool) -> tf.keras.Model:
    from vit_keras import vit  # 0.1.2, the version that wrote the published file

    if full:
        return vit.vit_b16(
            image_size=image_size, activation="linear", pretrained=False, include_top=True, pretrained_top=False
        )
    return vit.build_model(
        image_size=image_size,
        patch_size=16,
        num_layers=2,
        hidden_size=768,
        num_heads=12,
        name="vit-b16",
        mlp_dim=3072,
        classes=CLASSES,
        dropout=0.1,
        activation="linear",
        include_top=True,
    )


def efficientnetb0(image_size: int, full: bool) -> tf.keras.Model:
    import efficientnet.tfkeras as efficientnet  # registers swish and FixedDropout

    return efficientnet.EfficientNetB0(weights=None, input_shape=(image_size, image_size, 3), classes=CLASSES)


def kecam(name: str):
    """kecam 1.3.10's published constructors (full size only: the benchmark's files; the tests use
    tests/reference/kecam_fixtures.py's reduced ones)."""

    def build(image_size: int, full: bool) -> tf.keras.Model:
        from keras_cv_attention_models import convnext, levit, maxvit

        if not full:
            raise SystemExit(f"{name}: only --full here (reduced kecam files: kecam_fixtures.py)")
        if name == "convnext_tiny":
            return convnext.ConvNeXtTiny(classifier_activation=None, pretrained=None)
        if name == "levit128":
            return levit.LeViT128(classifier_activation=None, use_distillation=False, pretrained=None)
        return maxvit.MaxViT_Tiny(classifier_activation=None, pretrained=None)

    return build


def application(factory_name: str):
    def build(image_size: int, full: bool) -> tf.keras.Model:
        factory = getattr(tf.keras.applications, factory_name)
        return factory(
            include_top=True,
            weights=None,
            input_shape=(image_size, image_size, 3),
            classes=CLASSES,
            classifier_activation="linear",
        )

    return build


BUILDERS = {
    "vit_b16": vit_b16,
    "vgg16": application("VGG16"),
    "resnet50v2": application("ResNet50V2"),
    "resnet50": application("ResNet50"),
    "efficientnetb0": efficientnetb0,
    "convnext_tiny": kecam("convnext_tiny"),
    "maxvit_tiny": kecam("maxvit_tiny"),
    "levit128": kecam("levit128"),
}
WEIGHTS_ONLY = {"vit_b16", "convnext_tiny", "maxvit_tiny", "levit128"}


def randomize_statistics(model: tf.keras.Model, rng: np.random.Generator) -> None:
    """Batch-norm moving statistics away from (0, 1), so that loading them is tested too."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape).astype("float32"))


def logits_of(model: tf.keras.Model, images: np.ndarray) -> np.ndarray:
    """The output before any softmax: the last Dense layer's pre-activation, computed here."""
    head = model.layers[-1]
    features = tf.keras.Model(model.inputs, head.input)(images, training=False).numpy()
    kernel, bias = head.get_weights()
    return features.astype(np.float64) @ kernel.astype(np.float64) + bias


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("names", nargs="+", choices=sorted(BUILDERS))
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    image_size = 224 if args.full else 32
    report = {}
    for index, name in enumerate(args.names):
        tf.keras.utils.set_random_seed(index)
        rng = np.random.default_rng(index)
        model = BUILDERS[name](image_size, args.full)
        randomize_statistics(model, rng)
        pixels = rng.uniform(0, 255, (args.batch, image_size, image_size, 3)).astype(np.float32)
        logits = logits_of(model, (pixels / 255.0 - MEAN) / STD)
        path = args.out / f"{name}.h5"
        if name in WEIGHTS_ONLY:
            model.save_weights(str(path))
        else:
            model.save(str(path))
        np.save(args.out / f"{name}.pixels.npy", pixels)
        np.save(args.out / f"{name}.logits.npy", logits.astype(np.float32))
        report[name] = {
            "file": str(path),
            "bytes": path.stat().st_size,
            "parameters": int(model.count_params()),
            "keras": type(model).__module__.split(".")[0],
            "last_activation": str(getattr(model.layers[-1].activation, "__name__", "")),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
