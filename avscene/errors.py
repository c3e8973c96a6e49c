"""Errors that name the file and the problem, so batch jobs can record them per item.

Every error avscene raises for bad input or state derives from :class:`AvsceneError`; each CLI prints such an
error (and the ``ValueError``/``OSError`` of an invalid argument or file) in one line and exits with status 2
(:func:`avscene.entry.run_cli`).
"""
from __future__ import annotations

from pathlib import Path


class AvsceneError(Exception):
    """Base of avscene's errors: what went wrong and where, fit to print in one line."""


class DeviceError(AvsceneError, RuntimeError):
    """The device asked for is not available (e.g. ``cuda`` without a GPU)."""


class CheckpointError(AvsceneError, RuntimeError):
    """A weights file does not have the layout its extractor reads."""


class MediaError(AvsceneError, ValueError):
    """A media file is missing, unreadable, too short or lacks a needed stream.

    Messages start with the file path so per-clip error tables stay readable.
    """


class ManifestError(AvsceneError, ValueError):
    """A dataset manifest is malformed, references missing files or escapes its data root."""


class InputFileError(AvsceneError, ValueError):
    """A text, CSV, JSON or tensor file cannot be read as such (binary, undecodable, a field over the limit, truncated,
    pickled objects)."""


class RunFolderError(AvsceneError, RuntimeError):
    """A run folder cannot be written (disk full, not a run folder) or is not a finished run (no ``complete`` record,
    files changed since)."""


def require_file(path: Path) -> None:
    """Raise a MediaError unless ``path`` is a regular file (a folder with the file's name is not)."""
    if path.is_file():
        return
    if path.exists():
        raise MediaError(f"{path}: not a regular file (a folder or device has this name)")
    raise MediaError(f"{path}: file not found")
