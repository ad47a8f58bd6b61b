"""The reference lab's ClickMe 2 data (docs/clickme2.md): raw click files (CSV, NPZ) and
processed clickmap files (HDF5) in, the lab's maps and per-image split-half human ceilings out,
written as ClickMe shards. numpy, scipy, Pillow and h5py only (no TensorFlow, no torch).

Modules: ``reading`` (click files), ``hdf5`` (clickmap files), ``filtering`` (settings and the
lab's filters), ``maps`` (blur, resize, crop), ``ceiling`` (split-half ceiling), ``conversion``
(to shards, resumable), ``denominator`` (what alignment scores are divided by). The package
imports none of them, so that ``harmonize`` starts without loading h5py or scipy.
"""
