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
    def fit(cls, features: dict[str, np.ndarray], mask: np.ndarray) -> "Standardiser":
        """Fit on the seconds where ``mask`` (n, T) is true."""
        if not mask.any():
            raise ValueError("cannot fit a standardiser on zero valid seconds")
        mean, std = {}, {}
        for name, x in features.items():
            seconds = x[mask]
            mean[name] = seconds.mean(0)
            std[name] = np.maximum(seconds.std(0), 1e-6)
        return cls(mean, std)

    def transform(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: ((x - self.mean[n]) / self.std[n]).astype(np.float32) for n, x in features.items()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {f"mean/{n}": v for n, v in self.mean.items()}
        out.update({f"std/{n}": v for n, v in self.std.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Standardiser":
        pick = lambda prefix: {k.split("/", 1)[1]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)}  # noqa: E731
        return cls(pick("mean/"), pick("std/"))
