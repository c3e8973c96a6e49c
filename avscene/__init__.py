"""avscene: audio-visual scene classification and audio-visual discrepancy detection (VADD) in video.

The stages live in their own packages (``extract``: media -> per-second embeddings in a Zarr store; ``classify``:
fusion heads on the store; ``vadd``: discrepancy detection); this package is their front door and holds the
plumbing they share (errors, paths, progress bars, the command-line entry).
"""
__version__ = "0.1.0"
