"""Per-extractor standardisation, fitted on valid seconds of the train split only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Standardiser:
    """Mean and std per extractor and dimension."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    @classmethod
    def fit(cls, features: dict[str, np.ndarray], mask: np.ndarray, clips_per_chunk: int = 512) -> "Standardiser":
        """Fit on the seconds where ``mask`` (n, T) is true; float64 sums, chunked (no full float32 copy)."""
        if not mask.any():
            raise ValueError("cannot fit a standardiser on zero valid seconds")
        count = int(mask.sum())
        mean, std = {}, {}
        for name, x in features.items():
            total = np.zeros(x.shape[-1])
            squares = np.zeros(x.shape[-1])
            for start in range(0, len(x), clips_per_chunk):
                seconds = x[start : start + clips_per_chunk][mask[start : start + clips_per_chunk]].astype(np.float64)
                total += seconds.sum(0)
                squares += np.square(seconds).sum(0)
            mean[name] = total / count
            std[name] = np.maximum(np.sqrt(np.maximum(squares / count - mean[name] ** 2, 0.0)), 1e-6)
        return cls(mean, std)

    def transform(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Standardised float32 copies of ``features`` name -> (n, T, D_e)."""
        return {n: ((x - self.mean[n]) / self.std[n]).astype(np.float32) for n, x in features.items()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {f"mean/{n}": v for n, v in self.mean.items()}
        out.update({f"std/{n}": v for n, v in self.std.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Standardiser":
        pick = lambda prefix: {k.split("/", 1)[1]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}  # noqa: E731
        return cls(pick("mean/"), pick("std/"))
