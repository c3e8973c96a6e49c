"""Pretrained weights: where they live, how they are checked, and the only networked code.

Resolution order: the weights cache (``$AVSCENE_WEIGHTS`` or ``cache/weights``) holds files under the
spec's ``filename``; ``fetch`` downloads from the official URL and ``import_dir`` copies from a local
folder, both verifying the published digest (full sha256, a publisher's sha256 prefix, or md5) before a
file is put in place. Loading never downloads; the store records the full sha256 of the file loaded.

Weights trained here (:class:`~extract.registry.TrainedWeights`) have no URL: a training run installs the
file with a run record beside it (``<filename>.run.json``) whose sha256 the file must match.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import urllib.request
from pathlib import Path

from typing import Any

from avscene.errors import AvsceneError
from avscene.paths import weights_dir
from extract.registry import ExtractorSpec, TrainedWeights, WeightsSource

logger = logging.getLogger(__name__)

RANDOM_INIT = "random-init"
BUILTIN = "builtin-seeded"  # debug extractors: deterministic parameters, no file


class MissingWeightsError(AvsceneError, FileNotFoundError):
    """The checkpoint of an extractor is not in the weights cache."""


class WeightsChecksumError(AvsceneError, ValueError):
    """A checkpoint file does not have the published sha256."""


def file_digests(path: Path) -> dict[str, str]:
    """``{"sha256": ..., "md5": ...}`` of a file, read once in 1 MiB blocks."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
            md5.update(block)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


def expected_path(spec: ExtractorSpec) -> Path:
    if spec.weights is None:
        raise ValueError(f"{spec.name} has no weights file")
    return weights_dir() / spec.weights.filename


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def cached_digests(path: Path) -> dict[str, str]:
    """Digests of ``path``; a stamp file beside it avoids re-hashing an unchanged large file."""
    stat = path.stat()
    key = f"{stat.st_size} {stat.st_mtime_ns}"
    stamp_file = _stamp_path(path)
    if stamp_file.exists():
        parts = stamp_file.read_text().split()
        if len(parts) == 4 and " ".join(parts[2:]) == key:
            return {"sha256": parts[0], "md5": parts[1]}
    digests = file_digests(path)
    try:
        stamp_file.write_text(f"{digests['sha256']} {digests['md5']} {key}\n")
    except OSError as err:  # a read-only weights folder: hashed again next time
        logger.debug("%s: digest stamp not written (%s)", stamp_file, err)
    return digests


def record_path(spec: ExtractorSpec) -> Path:
    """The run record beside weights trained here."""
    if not isinstance(spec.weights, TrainedWeights):
        raise ValueError(f"{spec.name} has published weights, not a training run record")
    return weights_dir() / spec.weights.record_filename


def read_record(path: Path) -> dict[str, Any]:
    """A training-run record (JSON object with at least ``run_id`` and ``sha256``), checked."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsChecksumError(f"{path}: unreadable training-run record ({err})") from err
    if not isinstance(record, dict) or not {"run_id", "sha256"} <= record.keys():
        raise WeightsChecksumError(f"{path}: a training-run record needs 'run_id' and 'sha256'")
    return record


def training_record(spec: ExtractorSpec) -> dict[str, Any]:
    """The record of the training run that made ``spec``'s cached weights."""
    path = record_path(spec)
    if not path.exists():
        raise MissingWeightsError(f"{path}: the training-run record of {spec.name!r} is missing; {how_to_get(spec)}")
    return read_record(path)


def how_to_get(spec: ExtractorSpec) -> str:
    """One line saying where ``spec``'s weights come from."""
    if isinstance(spec.weights, TrainedWeights):
        return f"not published; train it with {spec.weights.train_command}"
    assert spec.weights is not None
    return f"official URL: {spec.weights.url}"


def mismatch(digests: dict[str, str], spec: ExtractorSpec, record: dict[str, Any] | None = None) -> str:
    """'' when ``digests`` satisfy the spec's published digests (or the run ``record``), else what differs.

    A source without any published digest has nothing to differ from: callers warn about it instead.
    """
    assert spec.weights is not None
    w = spec.weights
    if isinstance(w, TrainedWeights):
        record = training_record(spec) if record is None else record
        if digests["sha256"] != record["sha256"]:
            return f"sha256 {digests['sha256']} does not match {record['sha256']} of training run {record['run_id']}"
        return ""
    if w.sha256 and not digests["sha256"].startswith(w.sha256):
        return f"sha256 {digests['sha256']} does not match the published {w.sha256} ({w.sha256_origin})"
    if w.md5 and digests["md5"] != w.md5:
        return f"md5 {digests['md5']} does not match the published {w.md5}"
    return ""


def is_present(spec: ExtractorSpec) -> bool:
    """The weights file (and, for weights trained here, its run record) is in the cache."""
    if isinstance(spec.weights, TrainedWeights):
        return expected_path(spec).exists() and record_path(spec).exists()
    return spec.weights is not None and expected_path(spec).exists()


def cache_state(spec: ExtractorSpec) -> tuple[str, str]:
    """How ``spec``'s weights stand in the cache, and why: ``present`` (its digest checked, re-hashed only when the
    file's size or mtime changed), ``present, not verified`` (no digest published), ``DAMAGED`` (the digest differs
    from the published one or the training run's record) or ``MISSING``."""
    if not is_present(spec):
        return "MISSING", ""
    if isinstance(spec.weights, WeightsSource) and not spec.weights.verifiable:
        return "present, not verified", spec.weights.sha256_origin
    try:
        problem = mismatch(cached_digests(expected_path(spec)), spec)
    except WeightsChecksumError as err:  # an unreadable training-run record
        problem = str(err)
    return ("DAMAGED", f"{problem}; delete it and fetch or import it again") if problem else ("present", "")


def resolve_weights(spec: ExtractorSpec) -> Path:
    """The verified checkpoint path of ``spec``, or a :class:`MissingWeightsError` that says how to get it."""
    path = expected_path(spec)
    assert spec.weights is not None
    if not path.exists() and isinstance(spec.weights, TrainedWeights):
        raise MissingWeightsError(
            f"weights for {spec.name!r} are missing: expected file {spec.weights.filename} at {path} "
            f"({how_to_get(spec)}). Fix with one of:\n"
            f"  {spec.weights.train_command}    # trains on the train split, installs weights + run record here\n"
            f"  python -m extract weights import DIR    # copies {spec.weights.filename} and its "
            f"{spec.weights.record_filename} from another machine's weights cache, checking sha256\n"
            "or pass --random-init to run the architecture with random weights (recorded as such in the store)."
        )
    if not path.exists():
        raise MissingWeightsError(
            f"weights for {spec.name!r} are missing: expected file {spec.weights.filename} at {path} "
            f"({how_to_get(spec)}). Fix with one of:\n"
            f"  python -m extract weights fetch {spec.name}    # downloads from the official URL (needs internet)\n"
            f"  python -m extract weights import DIR    # copies {spec.weights.filename} from a local folder, checking sha256\n"
            "or pass --random-init to run the architecture with random weights (recorded as such in the store)."
        )
    digests = cached_digests(path)
    problem = mismatch(digests, spec)
    if problem:
        raise WeightsChecksumError(f"{path} ({spec.name!r}): {problem}; delete it and fetch or import it again")
    _warn_if_unverifiable(spec, path, digests["sha256"])
    return path


def _warn_if_unverifiable(spec: ExtractorSpec, path: Path, sha256: str) -> None:
    if isinstance(spec.weights, WeightsSource) and not spec.weights.verifiable:
        logger.warning("%s: %s is UNVERIFIED (%s); its sha256 is %s", spec.name, path, spec.weights.sha256_origin,
                       sha256)


def weights_id(path: Path) -> str:
    """What the store records for a loaded checkpoint: its full sha256."""
    return cached_digests(path)["sha256"]


def _install(source: Path, spec: ExtractorSpec, record: dict[str, Any] | None = None) -> Path:
    """Verify ``source`` against the spec (or a run ``record``) and copy it into the cache atomically.

    Weights trained here get their run record written after the file, so a file without a matching
    record is never taken for a finished install.
    """
    digests = file_digests(source)
    problem = mismatch(digests, spec, record)
    if problem:
        raise WeightsChecksumError(f"{source} ({spec.name!r}): {problem}")
    _warn_if_unverifiable(spec, source, digests["sha256"])
    target = expected_path(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)
    if record is not None:
        partial_record = target.with_name(target.name + ".run.partial")
        partial_record.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        partial_record.replace(record_path(spec))
    return target


def install_trained(spec: ExtractorSpec, source: Path, record: dict[str, Any]) -> Path:
    """Install weights a training run saved at ``source``; ``record`` gets the file's sha256 added.

    Returns:
        The installed path in the weights cache.
    """
    if not isinstance(spec.weights, TrainedWeights):
        raise ValueError(f"{spec.name} has published weights; fetch or import them instead")
    record = {**record, "sha256": file_digests(source)["sha256"]}
    return _install(source, spec, record)


def fetch(spec: ExtractorSpec) -> Path:
    """Download ``spec``'s checkpoint from its official URL (the project's only network access)."""
    if spec.weights is None:
        raise ValueError(f"{spec.name} has no weights to fetch")
    if isinstance(spec.weights, TrainedWeights):
        raise ValueError(f"{spec.name}: weights {how_to_get(spec)}")
    target = expected_path(spec)
    if target.exists() and not mismatch(cached_digests(target), spec):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    download = target.with_name(target.name + ".download")
    logger.info("downloading %s from %s", spec.weights.filename, spec.weights.url)
    with urllib.request.urlopen(spec.weights.url) as response, open(download, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)
    try:
        return _install(download, spec)
    finally:
        download.unlink(missing_ok=True)


def import_dir(folder: Path, specs: list[ExtractorSpec]) -> list[Path]:
    """Copy every checkpoint of ``specs`` found in ``folder`` into the cache, checking sha256."""
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of weights files")
    installed = []
    for spec in specs:
        if spec.weights is None:
            continue
        source = folder / spec.weights.filename
        if not source.exists():
            continue
        record = None
        if isinstance(spec.weights, TrainedWeights):
            record_file = folder / spec.weights.record_filename
            if not record_file.exists():
                raise MissingWeightsError(f"{record_file}: {source.name} was trained here; copy its run record too")
            record = read_record(record_file)
        target = expected_path(spec)
        if record is None and target.exists() and not mismatch(cached_digests(target), spec):
            installed.append(target)
            continue
        installed.append(_install(source, spec, record))
        logger.info("imported %s for %s", source, spec.name)
    return installed
