"""Stage 1 runner: manifest -> decode (threads) -> batched embedding -> store, resumable and shardable.

Work is done block by block (one store chunk of clips). Clips of the next block are decoded by worker
threads while the models embed the current one, so decoding overlaps model compute.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.decode_plan import DecodedClip, DecodePlan, decode_clip, probe_seconds
from extract.extractor import Extractor, create_extractor
from extract.manifest import Manifest, read_manifest
from extract.store import (
    DONE,
    FAILED,
    FLOAT16_MAX,
    BlockResult,
    ClipTable,
    EmbeddingStore,
    StoreError,
    default_clips_per_chunk,
    store_ready,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Everything one extraction run needs; stored nowhere else (the store records the results)."""

    data: Path
    store: str
    extractors: tuple[str, ...]
    classes: tuple[str, ...] | None = None  # CSV manifests only; None = the labels found
    device: str = "auto"
    random_init: bool = False
    shard_index: int = 0
    shard_count: int = 1
    overwrite: bool = False
    batch_size: int = 64
    decode_workers: int = 2
    clips_per_chunk: int | None = None
    wait_timeout_s: float = 900.0
    progress: bool = True


@dataclass
class RunSummary:
    """Per-extractor counts of this run and the failures it recorded."""

    done: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # already done before this run
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)  # extractor, clip, stage, message
    complete: dict[str, bool] = field(default_factory=dict)
    seconds: Counter = field(default_factory=Counter)  # decode (summed over threads), decode_wait, model, write

    def lines(self) -> list[str]:
        counts = [
            f"{name}: done {self.done[name]}, failed {self.failed[name]}, skipped {self.skipped[name]} "
            f"(already in store), store complete: {self.complete.get(name, False)}"
            for name in sorted(set(self.done) | set(self.failed) | set(self.skipped) | set(self.complete))
        ]
        return counts + ["time (s): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.seconds.items()))]


SHARD_ENV = (
    # (index variable, count variable, first-index variable or None): first match wins
    ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"),  # sbatch --array
    ("RANK", "WORLD_SIZE", None),  # torchrun / torch.distributed launchers
    ("SLURM_PROCID", "SLURM_NTASKS", None),  # srun --ntasks
)


def shard_from_env(env: Mapping[str, str]) -> tuple[int, int]:
    """This process's shard from a SLURM array, torchrun or srun environment (see ``SHARD_ENV``).

    SLURM array ids must be contiguous (``--array=0-15`` or ``1-16``): a stepped or partial array
    (``--array=3,7``) would map two tasks to wrong shards and is refused.
    """
    for index_var, count_var, first_var in SHARD_ENV:
        if index_var in env and count_var in env:
            try:
                first = int(env.get(first_var or "", "0") or 0)
                index, count = int(env[index_var]) - first, int(env[count_var])
                last = int(env.get("SLURM_ARRAY_TASK_MAX", first + count - 1)) if first_var else first + count - 1
            except ValueError:
                raise ValueError(f"--shard auto: {index_var}/{count_var} are not integers") from None
            if count < 1 or not 0 <= index < count or last - first + 1 != count:
                raise ValueError(
                    f"--shard auto: {index_var}={env[index_var]} gives shard {index} of {count_var}={count}; "
                    "SLURM arrays must be contiguous (e.g. --array=0-3)"
                )
            return index, count
    names = ", ".join(f"{i}+{c}" for i, c, _ in SHARD_ENV)
    raise ValueError(f"--shard auto: none of {names} is set; pass --shard i/n")


def parse_shard(text: str, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """Parse ``i/n`` (0-based shard index i of n), or ``auto`` (:func:`shard_from_env`)."""
    if text == "auto":
        return shard_from_env(os.environ if env is None else env)
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return index, count


def build_clip_table(manifest: Manifest, workers: int) -> ClipTable:
    """Probe every clip's length (in parallel) and lay out the clip table."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        probes = list(pool.map(probe_seconds, manifest.clips))
    rel = lambda p: "" if p is None else str(Path(p).resolve().relative_to(manifest.root.resolve()))  # noqa: E731
    return ClipTable(
        ids=np.array([c.clip_id for c in manifest.clips], dtype=str),
        labels=np.array([c.label for c in manifest.clips], dtype=str),
        splits=np.array([c.split for c in manifest.clips], dtype=str),
        n_seconds=np.array([n for n, _ in probes], dtype=np.int32),
        video_paths=np.array([rel(c.video_path) for c in manifest.clips], dtype=str),
        audio_paths=np.array([rel(c.audio_path) for c in manifest.clips], dtype=str),
        probe_errors=np.array([e for _, e in probes], dtype=str),
    )


def open_store(cfg: RunConfig, manifest: Manifest, extractors: list[Extractor]) -> EmbeddingStore:
    """Create (single run or shard 0) or wait for (other shards) the store and every extractor group."""
    leader = cfg.shard_index == 0
    if leader:
        if store_ready(cfg.store):
            store = EmbeddingStore.open(cfg.store, mode="r+")
            store.check_clip_ids([c.clip_id for c in manifest.clips])
        else:
            table = build_clip_table(manifest, cfg.decode_workers)
            per_chunk = cfg.clips_per_chunk or default_clips_per_chunk(
                int(table.n_seconds.max(initial=1)), max(e.spec.embedding_dim for e in extractors)
            )
            store = EmbeddingStore.create(
                cfg.store, table, classes=manifest.classes, data_root=str(manifest.root), clips_per_chunk=per_chunk
            )
        for e in extractors:
            store.prepare_group(
                e.spec.name, spec=e.spec.to_dict(), fingerprint=e.fingerprint, weights=e.weights_id,
                overwrite=cfg.overwrite,
            )
        return store
    store = EmbeddingStore.wait_until_ready(cfg.store, cfg.wait_timeout_s)
    store.check_clip_ids([c.clip_id for c in manifest.clips])
    for e in extractors:
        store.wait_for_group(e.spec.name, e.fingerprint, cfg.wait_timeout_s)
    return store


def run_extraction(cfg: RunConfig) -> RunSummary:
    """Extract every pending clip of this shard for every extractor; safe to rerun after any interruption."""
    extractors = [create_extractor(n, random_init=cfg.random_init, device=cfg.device) for n in cfg.extractors]
    modalities = {e.spec.modality for e in extractors}
    manifest = read_manifest(cfg.data, require=_required_files(modalities), classes=cfg.classes)
    store = open_store(cfg, manifest, extractors)
    clip_by_id = {c.clip_id: c for c in manifest.clips}
    clips = store.clips
    summary = RunSummary()

    pending = {e.spec.name: set(store.pending_blocks(e.spec.name, cfg.shard_index, cfg.shard_count)) for e in extractors}
    for e in extractors:
        summary.skipped[e.spec.name] = store.count_finished(e.spec.name, cfg.shard_index, cfg.shard_count)
    blocks = sorted(set().union(*pending.values()))
    total_clips = sum(store.block_slice(b).stop - store.block_slice(b).start for b in blocks)
    logger.info("%s: %d blocks (%d clips) to do in shard %d/%d", cfg.store, len(blocks), total_clips,
                cfg.shard_index, cfg.shard_count)

    progress = _progress(total_clips, cfg.progress)
    with ThreadPoolExecutor(max_workers=max(1, cfg.decode_workers)) as pool:
        def submit(block: int) -> list[Future]:
            todo = [e for e in extractors if block in pending[e.spec.name]]
            plan = DecodePlan.for_specs([e.spec for e in todo])
            sl = store.block_slice(block)
            return [
                pool.submit(decode_clip, clip_by_id[str(clips.ids[i])], int(clips.n_seconds[i]), plan,
                            str(clips.probe_errors[i]))
                for i in range(sl.start, sl.stop)
            ]

        queued = [submit(b) for b in blocks[:2]]
        for position, block in enumerate(blocks):
            started = time.perf_counter()
            decoded = [f.result() for f in queued.pop(0)]
            summary.seconds["decode_wait"] += time.perf_counter() - started
            summary.seconds["decode"] += sum(d.decode_seconds for d in decoded)
            if position + 2 < len(blocks):
                queued.append(submit(blocks[position + 2]))
            for e in extractors:
                if block in pending[e.spec.name]:
                    started = time.perf_counter()
                    result = embed_block(e, decoded, store.seconds_max, cfg.batch_size)
                    summary.seconds["model"] += time.perf_counter() - started
                    started = time.perf_counter()
                    store.write_block(e.spec.name, block, result)
                    summary.seconds["write"] += time.perf_counter() - started
                    _count(summary, e.spec.name, result, clips.ids[store.block_slice(block)])
            progress.update(len(decoded))
    progress.close()
    for e in extractors:
        summary.complete[e.spec.name] = store.finalize_if_complete(e.spec.name)
    return summary


def embed_block(extractor: Extractor, decoded: list[DecodedClip], seconds_max: int, batch_size: int) -> BlockResult:
    """Embed all seconds of a block's clips in batches across clips; failures stay per clip."""
    spec = extractor.spec
    n = len(decoded)
    embeddings = np.zeros((n, seconds_max, spec.embedding_dim), np.float32)
    valid = np.zeros((n, seconds_max), bool)
    status = np.full(n, DONE, np.int8)
    stage = np.full(n, "", dtype=object)
    message = np.full(n, "", dtype=object)
    seconds = np.array([d.decode_seconds for d in decoded], np.float32)

    inputs, owners = [], []
    for i, d in enumerate(decoded):
        error = d.error_for(spec)
        if error is not None:
            status[i], stage[i], message[i] = FAILED, error[0], error[1]
            continue
        x = d.input_for(spec)
        inputs.append(x)
        owners.append(i)
    if inputs:
        started = time.perf_counter()
        stacked = np.concatenate(inputs)
        out = np.concatenate([extractor.embed(stacked[s : s + batch_size]) for s in range(0, len(stacked), batch_size)])
        model_s = time.perf_counter() - started
        offset = 0
        for i, x in zip(owners, inputs):
            k = len(x)
            emb = out[offset : offset + k]
            offset += k
            seconds[i] += model_s * k / len(stacked)
            if not np.isfinite(emb).all() or np.abs(emb).max(initial=0) > FLOAT16_MAX:
                status[i], stage[i], message[i] = FAILED, "model", "non-finite or float16-overflowing embedding"
                continue
            embeddings[i, :k] = emb
            valid[i, :k] = True
    return BlockResult(embeddings, valid, status, stage.astype(str), message.astype(str), seconds)


def _required_files(modalities: set[str]) -> tuple[str, ...]:
    """Media kinds the manifest must find on disk: video for visual extractors, audio for audio ones."""
    return tuple(kind for kind, modality in (("video", "visual"), ("audio", "audio")) if modality in modalities)


def _count(summary: RunSummary, name: str, result: BlockResult, ids: np.ndarray) -> None:
    summary.done[name] += int((result.status == DONE).sum())
    summary.failed[name] += int((result.status == FAILED).sum())
    for i in np.flatnonzero(result.status == FAILED):
        summary.errors.append((name, str(ids[i]), str(result.error_stage[i]), str(result.error_message[i])))


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", disable=not enabled, dynamic_ncols=True, desc="extract")


__all__ = ["RunConfig", "RunSummary", "run_extraction", "parse_shard", "shard_from_env", "StoreError"]
