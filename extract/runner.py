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
from extract.extractor import Extractor, InferenceOptions, Precision, create_extractor
from extract.manifest import Manifest, read_manifest
from extract.store import (
    DEFAULT_VIEW,
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
from extract.train_extractor import leaked_clips, store_summary
from extract.views import View, augment_clip

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    """Everything one extraction run needs; stored nowhere else (the store records the results)."""

    data: Path
    store: str
    extractors: tuple[str, ...]
    classes: tuple[str, ...] | None = None  # CSV manifests only; None = the labels found
    groups: Path | None = None  # a grouping file (extract.taxonomy), recorded in the store's taxonomy
    device: str = "auto"
    random_init: bool = False
    shard_index: int = 0
    shard_count: int = 1
    overwrite: bool = False
    batch_size: int | None = None  # per forward pass, for every extractor not in batch_sizes; None: by device
    batch_sizes: tuple[tuple[str, int], ...] = ()  # (extractor name, batch size) overrides
    precision: Precision = "auto"  # see extract.extractor.InferenceOptions
    channels_last: bool = True
    compile: bool = False
    decode_workers: int = 2
    clips_per_chunk: int | None = None
    wait_timeout_s: float = 900.0
    progress: bool = True
    views: tuple[View, ...] = ()  # augmented visual passes, stored beside the original view

    def inference_options(self, name: str) -> InferenceOptions:
        """The inference options of extractor ``name`` in this run (before resolution for the device)."""
        return InferenceOptions(
            precision=self.precision, channels_last=self.channels_last, compile=self.compile,
            batch_size=dict(self.batch_sizes).get(name, self.batch_size),
        )


@dataclass(frozen=True)
class Target:
    """One group the run writes: an extractor on the original frames or on an augmented ``view``."""

    extractor: Extractor
    view: View | None = None

    @property
    def name(self) -> str:
        return self.extractor.spec.name

    @property
    def view_name(self) -> str:
        return DEFAULT_VIEW if self.view is None else self.view.name

    @property
    def key(self) -> str:
        """Summary key: the extractor name, or ``name/view`` for an augmented view."""
        return self.name if self.view is None else f"{self.name}/{self.view.name}"

    @property
    def fingerprint(self) -> str:
        fp = self.extractor.fingerprint
        return fp if self.view is None else self.view.fingerprint(fp)

    def extra_attrs(self) -> dict:
        attrs = {} if self.view is None else {"view_transform": self.view.to_dict()}
        if self.extractor.training_run is not None:
            attrs["training_run"] = store_summary(self.extractor.training_run)
        return attrs


def build_targets(extractors: list[Extractor], views: tuple[View, ...]) -> list[Target]:
    """Every extractor on the original view; visual extractors also on each augmented view."""
    visual = [e for e in extractors if e.spec.modality == "visual"]
    if views and not visual:
        logger.warning("--views ignored: augmented views apply to visual extractors only")
    return [Target(e) for e in extractors] + [Target(e, v) for v in views for e in visual]



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
    # lexical: manifest paths are built under its root (a symlinked media folder must not be resolved away)
    rel = lambda p: "" if p is None else str(Path(p).relative_to(manifest.root))  # noqa: E731
    return ClipTable(
        ids=np.array([c.clip_id for c in manifest.clips], dtype=str),
        labels=np.array([c.label for c in manifest.clips], dtype=str),
        splits=np.array([c.split for c in manifest.clips], dtype=str),
        n_seconds=np.array([n for n, _ in probes], dtype=np.int32),
        video_paths=np.array([rel(c.video_path) for c in manifest.clips], dtype=str),
        audio_paths=np.array([rel(c.audio_path) for c in manifest.clips], dtype=str),
        probe_errors=np.array([e for _, e in probes], dtype=str),
    )


def open_store(cfg: RunConfig, manifest: Manifest, targets: list[Target]) -> EmbeddingStore:
    """Create (single run or shard 0) or wait for (other shards) the store and every extractor/view group."""
    extractors = list({id(t.extractor): t.extractor for t in targets}.values())
    leader = cfg.shard_index == 0
    if leader:
        if store_ready(cfg.store):
            store = EmbeddingStore.open(cfg.store, mode="r+")
            store.check_clip_ids([c.clip_id for c in manifest.clips])
            store.record_taxonomy(manifest.taxonomy)
        else:
            table = build_clip_table(manifest, cfg.decode_workers)
            per_chunk = cfg.clips_per_chunk or default_clips_per_chunk(
                int(table.n_seconds.max(initial=1)), max(e.spec.embedding_dim for e in extractors)
            )
            store = EmbeddingStore.create(
                cfg.store, table, taxonomy=manifest.taxonomy, data_root=str(manifest.root), clips_per_chunk=per_chunk
            )
        _refuse_training_leak(store, extractors)
        for t in targets:
            store.prepare_group(
                t.name, spec=t.extractor.spec.to_dict(), fingerprint=t.fingerprint, weights=t.extractor.weights_id,
                overwrite=cfg.overwrite, view=t.view_name, inference=t.extractor.options.to_dict(),
                extra_attrs=t.extra_attrs(),
            )
        return store
    store = EmbeddingStore.wait_until_ready(cfg.store, cfg.wait_timeout_s)
    store.check_clip_ids([c.clip_id for c in manifest.clips])
    for t in targets:
        store.wait_for_group(t.name, t.fingerprint, cfg.wait_timeout_s, view=t.view_name)
    return store


def _refuse_training_leak(store: EmbeddingStore, extractors: list[Extractor]) -> None:
    """Weights trained here must not have seen a clip this store counts as a test clip."""
    test_ids = list(store.clips.ids[store.clips.splits == "test"])
    for e in extractors:
        if e.training_run is not None and (leaked := leaked_clips(e.training_run, test_ids)):
            raise StoreError(
                f"{e.spec.name}: training run {e.training_run['run_id']} trained on {len(leaked)} clip(s) that are "
                f"test clips of {store.location} (e.g. {leaked[0]}); retrain on this dataset's train split"
            )


def run_extraction(cfg: RunConfig) -> RunSummary:
    """Extract every pending clip of this shard for every extractor; safe to rerun after any interruption."""
    extractors = [
        create_extractor(n, random_init=cfg.random_init, device=cfg.device, options=cfg.inference_options(n))
        for n in cfg.extractors
    ]
    targets = build_targets(extractors, cfg.views)
    modalities = {e.spec.modality for e in extractors}
    manifest = read_manifest(cfg.data, require=_required_files(modalities), classes=cfg.classes, groups=cfg.groups)
    store = open_store(cfg, manifest, targets)
    clip_by_id = {c.clip_id: c for c in manifest.clips}
    clips = store.clips
    summary = RunSummary()

    shard = (cfg.shard_index, cfg.shard_count)
    pending = {t.key: set(store.pending_blocks(t.name, *shard, view=t.view_name)) for t in targets}
    for t in targets:
        summary.skipped[t.key] = store.count_finished(t.name, *shard, view=t.view_name)
    blocks = sorted(set().union(*pending.values()))
    total_clips = sum(store.block_slice(b).stop - store.block_slice(b).start for b in blocks)
    logger.info("%s: %d blocks (%d clips) to do in shard %d/%d", cfg.store, len(blocks), total_clips,
                cfg.shard_index, cfg.shard_count)

    progress = _progress(total_clips, cfg.progress)
    with ThreadPoolExecutor(max_workers=max(1, cfg.decode_workers)) as pool:
        def submit(block: int) -> list[Future]:
            plan = DecodePlan.for_specs([t.extractor.spec for t in targets if block in pending[t.key]])
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
            for view in (None, *cfg.views):
                todo = [t for t in targets if t.view == view and block in pending[t.key]]
                inputs = decoded if view is None or not todo else [augment_clip(d, view) for d in decoded]
                for t in todo:
                    started = time.perf_counter()
                    result = embed_block(t.extractor, inputs, store.seconds_max)
                    summary.seconds["model"] += time.perf_counter() - started
                    started = time.perf_counter()
                    store.write_block(t.name, block, result, view=t.view_name)
                    summary.seconds["write"] += time.perf_counter() - started
                    _count(summary, t.key, result, clips.ids[store.block_slice(block)])
            progress.update(len(decoded))
    progress.close()
    for t in targets:
        summary.complete[t.key] = store.finalize_if_complete(t.name, t.view_name)
    return summary


def embed_block(extractor: Extractor, decoded: list[DecodedClip], seconds_max: int) -> BlockResult:
    """Embed all seconds of a block's clips in batches (``extractor.options.batch_size``) across clips."""
    batch_size = extractor.options.batch_size
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
        outputs = _embed_clips(extractor, inputs, batch_size)
        model_s = time.perf_counter() - started
        n_seconds = sum(len(x) for x in inputs)
        for i, x, emb in zip(owners, inputs, outputs):
            seconds[i] += model_s * len(x) / n_seconds
            if isinstance(emb, Exception):
                status[i], stage[i], message[i] = FAILED, "model", f"{type(emb).__name__}: {emb}"
                continue
            if not np.isfinite(emb).all() or np.abs(emb).max(initial=0) > FLOAT16_MAX:
                status[i], stage[i], message[i] = FAILED, "model", "non-finite or float16-overflowing embedding"
                continue
            embeddings[i, : len(x)] = emb
            valid[i, : len(x)] = True
    return BlockResult(embeddings, valid, status, stage.astype(str), message.astype(str), seconds)


def _embed_batches(extractor: Extractor, stacked: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([extractor.embed(stacked[s : s + batch_size]) for s in range(0, len(stacked), batch_size)])


def _embed_clips(extractor: Extractor, inputs: list[np.ndarray], batch_size: int) -> list[np.ndarray | Exception]:
    """Each clip's ``(seconds, D)`` embeddings, batched across clips; when a batch raises, the clips are retried
    one by one so that only those that fail get their exception (recorded as a per-clip ``model`` error)."""
    try:
        out = _embed_batches(extractor, np.concatenate(inputs), batch_size)
        return list(np.split(out, np.cumsum([len(x) for x in inputs])[:-1]))
    except Exception as err:  # a model error must cost only the clips that cause it
        logger.warning("%s: a batch failed (%s); retrying its %d clips one by one", extractor.spec.name, err, len(inputs))
    results: list[np.ndarray | Exception] = []
    for x in inputs:
        try:
            results.append(_embed_batches(extractor, x, batch_size))
        except Exception as err:
            results.append(err)
    return results


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
