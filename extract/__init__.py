"""avscene stage 1: dataset manifest -> decode -> 1 Hz sampling -> embed -> Zarr store."""

__version__ = "0.1.0"
