"""A HEAR 2021 scene task (hear-eval-kit's on-disk layout) from any dataset manifest.

So that hear-eval-kit can score avscene's audio models (through :mod:`extract.hear`) on the user's own labelled
clips: ``task_metadata.json`` (scene embedding, multiclass, ``new_split_kfold``), ``labelvocabulary.csv``,
``foldNN.json`` (file -> [label]) and ``<rate>/foldNN/<clip>.wav`` (mono float WAV, the first ``seconds`` whole
seconds, zero-padded when shorter). The folds keep each recording location (the taxonomy's validation key; TAU: the
location in the file name) in one fold, per label the biggest locations first into the fold holding fewest clips of
that label. Audio goes through the extraction decode path (mono mix, polyphase resampling), one clip at a time.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from extract.audio_io import write_float_wav
from extract.decode_plan import DecodePlan, decode_whole_clip
from extract.manifest import Clip, Manifest
from avscene.progress import progress_bar

logger = logging.getLogger(__name__)


def location_folds(clips: list[Clip], location_of, n_folds: int) -> dict[str, int]:
    """clip id -> fold: each (label, location) group whole in one fold, balanced per label, then overall."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for clip in clips:
        groups[(clip.label, location_of(clip.clip_id))].append(clip.clip_id)
    per_label: dict[str, list[int]] = defaultdict(lambda: [0] * n_folds)
    total = [0] * n_folds
    fold_of: dict[str, int] = {}
    for (label, _), ids in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]), kv[0][1])):
        fold = min(range(n_folds), key=lambda f: (per_label[label][f], total[f], f))
        fold_of.update(dict.fromkeys(ids, fold))
        per_label[label][fold] += len(ids)
        total[fold] += len(ids)
    return fold_of


def write_hear_scene_task(
    manifest: Manifest, out_dir: Path, name: str = "avscene-scenes", sample_rates_hz: tuple[int, ...] = (32_000,),
    seconds: int = 10, n_folds: int = 3,
) -> Path:
    """Write the task folder ``out_dir/name`` from the labelled clips of ``manifest``; returns it.

    A clip whose audio cannot be decoded is left out and logged (listed in ``task_metadata.json`` under
    ``excluded``); the others are written.

    Raises:
        ValueError: fewer labelled clips than folds, a non-positive duration, or no sample rate.
    """
    clips = [c for c in manifest.clips if c.label]
    if len(clips) < n_folds or n_folds < 2 or seconds < 1 or not sample_rates_hz:
        raise ValueError(f"need >= 2 folds, at least as many labelled clips ({len(clips)}), seconds >= 1 and a "
                         f"sample rate; got {n_folds} folds, {seconds} s, rates {sample_rates_hz}")
    task = Path(out_dir) / name
    splits = [f"fold{i:02d}" for i in range(n_folds)]
    fold_of = location_folds(clips, manifest.taxonomy.location, n_folds)
    plan = DecodePlan(frozenset(), frozenset((rate, "mono", 0) for rate in sample_rates_hz))
    labels_of: dict[str, dict[str, list[str]]] = {s: {} for s in splits}
    excluded: dict[str, str] = {}
    for clip in progress_bar(clips, desc="HEAR task", unit="clip"):
        decoded = decode_whole_clip(clip, plan, max_seconds=seconds)
        if decoded.errors:
            excluded[clip.clip_id] = "; ".join(message for _, message in decoded.errors.values())
            logger.warning("%s: left out of the HEAR task: %s", clip.clip_id, excluded[clip.clip_id])
            continue
        split = splits[fold_of[clip.clip_id]]
        for rate in sample_rates_hz:
            windows = decoded.audio[(rate, "mono", 0)][:, 0]  # (n_seconds <= seconds, rate)
            waveform = np.zeros(seconds * rate, np.float32)
            waveform[: windows.size] = windows.reshape(-1)
            write_float_wav(task / str(rate) / split / f"{clip.clip_id}.wav", waveform[None], rate)
        labels_of[split][f"{clip.clip_id}.wav"] = [clip.label]
    vocabulary = sorted({label for split in labels_of.values() for (label,) in split.values()})
    for split in splits:
        (task / f"{split}.json").write_text(json.dumps(labels_of[split], indent=1) + "\n")
    (task / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(vocabulary)))
    metadata = {
        "task_name": name, "version": f"avscene {manifest.root}", "embedding_type": "scene",
        "prediction_type": "multiclass", "split_mode": "new_split_kfold", "nfolds": n_folds, "splits": splits,
        "sample_duration": float(seconds), "sample_rates": list(sample_rates_hz), "evaluation": ["top1_acc"],
        "default_mode": "full", "mode": "full", "evaluation_params": {},
        "notes": f"first {seconds} s of each clip, mono; folds keep recording locations apart "
                 f"({manifest.taxonomy.location_rule} rule); written by extract.hear_task",
        "excluded": excluded,
    }
    (task / "task_metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")
    return task
