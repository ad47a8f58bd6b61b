"""Loading pixel models saved by this project (``.keras``, legacy full-model ``.h5``, ``.weights.h5``,
a timm network's ``.safetensors``).

A file that is not what its name says (a text file named ``.keras`` or ``.h5``, a ``.keras``
archive without its config or with a layer that cannot be rebuilt, a truncated download) is
refused with a :class:`~harmonization.models.legacy_h5.ModelFileError`: one line naming the file
and what is wrong.
"""

from __future__ import annotations

import json
import os
import zipfile

import h5py
import keras

from harmonization.models.legacy_h5 import ModelFileError, check_contained, read_legacy_h5
from harmonization.models.zoo import MODEL_NAMES, build_model

KERAS_CONFIG = "config.json"
KERAS_WEIGHTS = "model.weights.h5"
MEMBER_LIMITS = {KERAS_CONFIG: 64 * 2**20, "metadata.json": 2**20}
"""The largest size of a ``.keras`` archive's text members: configs of the largest zoo models
are a few MB."""
MAX_WEIGHTS_BYTES = 64 * 2**30
"""The largest size of any other member (the weights)."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def _check_member_sizes(archive: zipfile.ZipFile, path: str) -> None:
    for member in archive.infolist():
        limit = MEMBER_LIMITS.get(member.filename, MAX_WEIGHTS_BYTES)
        if member.file_size > limit:
            raise ModelFileError(
                f"model file {path}: its member {member.filename} declares "
                f"{member.file_size:,} bytes, more than a saved model holds "
                f"({limit:,} at most)"
            )


def check_keras_archive(path: str) -> None:
    """Refuse a ``.keras`` file that is not a zip archive holding a JSON model config, one whose
    members declare absurd sizes (checked before any is read), or whose weights read data from
    outside the archive (``legacy_h5.check_contained``)."""
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"model file {path}: not a .keras archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            if KERAS_CONFIG not in archive.namelist():
                raise ModelFileError(
                    f"model file {path}: a zip archive without {KERAS_CONFIG}, not a saved Keras model"
                )
            _check_member_sizes(archive, path)
            json.loads(archive.read(KERAS_CONFIG))
            if KERAS_WEIGHTS in archive.namelist():
                with archive.open(KERAS_WEIGHTS) as member, h5py.File(member, "r") as weights:
                    check_contained(weights, f"{path}:{KERAS_WEIGHTS}")
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise ModelFileError(f"model file {path}: damaged .keras archive ({_first_line(error)})") from None


def load_saved_model(path: str | os.PathLike) -> keras.Model:
    """A whole model from a ``.keras`` or legacy full-model ``.h5`` file, with one-line errors."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path}: no such file")
    if path.endswith(".keras"):
        check_keras_archive(path)
    elif read_legacy_h5(path).config is None:
        raise ModelFileError(f"model file {path}: holds weights only (no model config)")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a bad config; name the file in every case
        raise ModelFileError(f"model file {path}: cannot be rebuilt ({_first_line(error)})") from None


def load_harmonized(
    path: str, name: str | None = None, num_classes: int | None = None, image_size: int | None = None
) -> keras.Model:
    """Load a pixel model from ``.keras``, legacy full-model ``.h5``, ``.weights.h5``, or the
    ``.safetensors`` file of a harmonized timm network (torch backend).

    A ``.weights.h5`` file holds no architecture: pass the zoo ``name``, ``num_classes`` and
    ``image_size`` (default 224) it was built with. A timm file names its architecture itself
    (``harmonization.models.timm_file``); ``num_classes`` is then checked against its head and
    ``image_size`` replaces the size it records.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.endswith(".weights.h5"):
        if name is None or num_classes is None:
            raise ValueError(
                f"{path}: a .weights.h5 file needs name= and num_classes= (known models: {', '.join(MODEL_NAMES)})"
            )
        return build_model(name, num_classes, image_size or 224, weights=path)
    if path.endswith((".keras", ".h5", ".hdf5")):
        return load_saved_model(path)
    if path.endswith(".safetensors"):
        from harmonization.models.timm_file import load_timm_file

        return load_timm_file(path, num_classes, image_size)
    raise ValueError(f"{path}: expected a .keras, .h5, .weights.h5 or .safetensors file")
