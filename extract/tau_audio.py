"""A CSV manifest over a folder of real TAU wavs described by a ``MANIFEST.tsv`` (file, scene_label, fold).

Used by ``make real-audio-check`` on the 42 real recordings in ``../shared/tau/audio``. The folder is
linked (not copied) into the manifest's data root so that manifest paths stay inside that root.
"""
from __future__ import annotations

import csv
from pathlib import Path

from avscene.errors import ManifestError

FOLD_TO_SPLIT = {"fold1_train": "train", "fold1_evaluate": "test", "fold1_test": "test"}


def write_tau_audio_manifest(audio_dir: Path, out_dir: Path) -> Path:
    """Write ``out_dir/manifest.csv`` (columns video, audio, label, split) for the wavs of ``audio_dir``."""
    listing = audio_dir / "MANIFEST.tsv"
    if not listing.exists():
        raise ManifestError(f"{listing}: missing; expected a tab-separated file, scene_label, fold listing")
    with open(listing, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"file", "scene_label", "fold"} <= set(rows[0]):
        raise ManifestError(f"{listing}: needs the columns file, scene_label, fold")
    out_dir.mkdir(parents=True, exist_ok=True)
    link = out_dir / "audio"
    if link.is_symlink() and link.resolve() != audio_dir.resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(audio_dir.resolve(), target_is_directory=True)
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "audio", "label", "split"])
        for line, row in enumerate(rows, start=2):
            if row["fold"] not in FOLD_TO_SPLIT:
                raise ManifestError(f"{listing}:{line}: unknown fold {row['fold']!r}; known {sorted(FOLD_TO_SPLIT)}")
            writer.writerow(["", f"audio/{row['file']}", row["scene_label"], FOLD_TO_SPLIT[row["fold"]]])
    return manifest
