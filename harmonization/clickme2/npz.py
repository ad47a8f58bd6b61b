"""Read an ``.npz`` archive without executing code from it.

Numeric arrays go through ``numpy.lib.format.read_array(allow_pickle=False)``. The lab's click
files hold ragged lists (one array of clicks per participant), which numpy can only store as object
arrays, i.e. as a pickle. Those are decoded by an unpickler that may build nothing but numpy arrays,
dtypes and scalars (plus the plain containers pickle builds without any import); any other callable
named in the file is refused, so opening a file can never run its code.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import numpy as np

from harmonization.clickme2.errors import bad_click_file

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_member(handle, key: str, path: str) -> np.ndarray:
    version = np.lib.format.read_magic(handle)
    header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(handle)
    dtype = header[2]
    if not dtype.hasobject:
        handle.seek(0)
        return np.lib.format.read_array(handle, allow_pickle=False)
    try:
        value = _ArrayUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as error:
        raise bad_click_file(path, f"key {key!r}", f"unreadable object array ({error})") from error
    if not isinstance(value, np.ndarray):
        raise bad_click_file(path, f"key {key!r}", f"expected an array, found {type(value).__name__}")
    return value


def load_npz(path: str | os.PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the archive ``path`` (a missing key names the file and the key)."""
    path = os.fspath(path)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise bad_click_file(path, "", f"not an .npz archive ({error})") from error
    with archive:
        names = set(archive.namelist())
        arrays = {}
        for key in keys:
            member = f"{key}.npy"
            if member not in names:
                found = ", ".join(sorted(name[:-4] for name in names if name.endswith(".npy")))
                raise bad_click_file(path, f"key {key!r}", f"missing (keys: {found})")
            with archive.open(member) as raw:
                data = io.BytesIO(raw.read())
            try:
                arrays[key] = _read_member(data, key, path)
            except ValueError as error:
                if type(error) is not ValueError:
                    raise
                raise bad_click_file(path, f"key {key!r}", str(error)) from error
    return arrays
