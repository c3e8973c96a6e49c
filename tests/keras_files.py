"""Writes OpenL3's Keras weights files for tests (the layout :func:`extract.models.openl3.read_keras_weights` reads)."""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np


def write_keras_weights(path: Path, weights: dict[str, np.ndarray]) -> None:
    """Write ``"<layer>/<weight>:0" -> array`` as a Keras weights-only HDF5 file (gzip-compressed when the
    name ends in ``.gz``)."""
    import h5py

    layers: dict[str, list[str]] = {}
    for key in weights:
        layer, weight = key.rsplit("/", 1)
        layers.setdefault(layer, []).append(weight)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name in layers]
        for layer, names in layers.items():
            group = handle.create_group(layer)
            group.attrs["weight_names"] = [f"{layer}/{name}".encode() for name in names]
            for name in names:
                group.create_dataset(f"{layer}/{name}", data=weights[f"{layer}/{name}"])
    raw = buffer.getvalue()
    Path(path).write_bytes(gzip.compress(raw, compresslevel=1) if str(path).endswith(".gz") else raw)
