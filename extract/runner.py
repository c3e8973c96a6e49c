"""Stage 1 runner: manifest -> decode (worker threads or processes) -> batched embedding -> store, resumable and shardable.

Work is done block by block (one store chunk of clips). Clips of the next block are decoded by the decode
workers while the models embed the current one, so decoding overlaps model compute; at most
``BLOCKS_IN_FLIGHT`` blocks of decoded clips are held at once (memory stays bounded whatever the dataset size).
A clip longer than ``STREAM_CLIP_SECONDS`` is not decoded at once: it is decoded and embedded ``STREAM_CHUNK_SECONDS``
at a time, one modality after the other, by the run's own process (memory stays bounded whatever the clip's length).
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from collections import Counter
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
import multiprocessing
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

from extract.decode_plan import (DecodedClip, DecodePlan, audio_source, decode_clip, describe_error, frame_fingerprint,
                                 iter_decoded, probe_timeline)
from extract.embed import embed_batched
from extract.extractor import Extractor, InferenceOptions, Precision, create_extractor
from avscene.errors import DeviceError, MediaError
from extract.manifest import Clip, Manifest, read_manifest
from extract.registry import resolve_names
from avscene.progress import progress_bar
from extract.store.format import DEFAULT_VIEW, DONE, FAILED, FLOAT16_MAX, PENDING, ClipTable, StoreError, store_ready
from extract.store.lock import ShardLock
from extract.store.shards import count_status, pending_blocks, wait_for_group, wait_until_ready
from extract.store.writer import BlockResult, StoreWriter, default_clips_per_chunk
from extract.train_extractor import leaked_clips, store_summary
from extract.views import View, augment_clip

logger = logging.getLogger(__name__)

BLOCKS_IN_FLIGHT = 2  # the block being embedded and the next one being decoded
STREAM_CLIP_SECONDS = 120
"""Clips longer than this are streamed (:func:`embed_long_clip`) instead of decoded as one chunk."""
STREAM_CHUNK_SECONDS = 30
DecodeBackend = Literal["thread", "process"]
DECODE_BACKENDS: tuple[DecodeBackend, ...] = ("thread", "process")


def visible_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM or container allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def codec_threads_per_worker(workers: int) -> int:
    """Each decoder's own threads: the visible cores shared out between the decode workers (at least 1)."""
    return max(1, visible_cores() // max(1, workers))


def decode_pool(workers: int, backend: DecodeBackend) -> Executor:
    """``workers`` decode threads, or processes (spawned: no copy of the parent's model threads or CUDA state;
    each ends itself when the run that started it dies, kill -9 included)."""
    if backend not in DECODE_BACKENDS:
        raise ValueError(f"decode backend must be one of {DECODE_BACKENDS}, got {backend!r}")
    if backend == "process":
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))
        _spawn_ignoring_ctrl_c(pool, workers)
        return pool
    return ThreadPoolExecutor(max_workers=workers)


def _spawn_ignoring_ctrl_c(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start the pool's ``workers`` processes with SIGINT ignored (kept across their exec): Ctrl-C reaches the whole
    process group, and only the run should answer it (one line, :func:`avscene.entry.run_cli`), not every worker with
    a traceback."""
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for _ in range(workers):  # each submit with no idle worker spawns one
            pool.submit(int)
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Decode-process initializer: a watcher thread ends the worker once its parent is gone (a killed run's workers
    would otherwise wait on their task queue forever)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


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
    decode_workers: int | None = None  # None: one per visible core
    decode_backend: DecodeBackend = "thread"  # or "process"; see README "Decoding" for what scales
    decode_device: str = "cpu"  # extract.gpu_decode.DECODE_DEVICES: cuda decodes with NVDEC (threads, frames on the GPU)
    frame_choice: str = "middle"  # extract.store.FRAME_CHOICES; one per store
    clips_per_chunk: int | None = None
    wait_timeout_s: float = 900.0
    progress: bool = True
    views: tuple[View, ...] = ()  # augmented visual passes, stored beside the original view
    retry_failed: bool = False  # redo the clips an earlier run recorded as failed (and nothing else)
    wait_for_lock: bool = False  # another run holds this shard: wait for it (else refuse to start)

    @property
    def workers(self) -> int:
        """Decode workers of this run: ``decode_workers``, or one per visible core."""
        return self.decode_workers if self.decode_workers is not None else visible_cores()

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
    frame_choice: str = "middle"

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
        fp = frame_fingerprint(self.extractor.fingerprint, self.extractor.spec, self.frame_choice)
        return fp if self.view is None else self.view.fingerprint(fp)

    def extra_attrs(self) -> dict:
        attrs = {} if self.view is None else {"view_transform": self.view.to_dict()}
        if self.extractor.training_run is not None:
            attrs["training_run"] = store_summary(self.extractor.training_run)
        return attrs


def build_targets(extractors: list[Extractor], views: tuple[View, ...], frame_choice: str = "middle") -> list[Target]:
    """Every extractor on the original view; visual extractors also on each augmented view."""
    visual = [e for e in extractors if e.spec.modality == "visual"]
    if views and not visual:
        logger.warning("--views ignored: augmented views apply to visual extractors only")
    return [Target(e, None, frame_choice) for e in extractors] + [Target(e, v, frame_choice) for v in views for e in visual]



@dataclass
class RunSummary:
    """Per-extractor clip counts of one run (this shard): what it did now and what the store held before."""

    store: str = ""
    done: Counter = field(default_factory=Counter)  # embedded by this run
    failed: Counter = field(default_factory=Counter)  # failed in this run (recorded in the store)
    done_earlier: Counter = field(default_factory=Counter)  # embedded by an earlier run
    failed_earlier: Counter = field(default_factory=Counter)  # failures an earlier run recorded, not retried
    retried: Counter = field(default_factory=Counter)  # earlier failures redone by --retry-failed
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)  # extractor, clip, stage, message
    complete: dict[str, bool] = field(default_factory=dict)
    seconds: Counter = field(default_factory=Counter)  # decode (summed over workers), decode_wait, augment, model, write
    model_seconds: Counter = field(default_factory=Counter)  # the "model" seconds of each target (extractor / view)

    @property
    def names(self) -> list[str]:
        return sorted(set(self.done) | set(self.failed) | set(self.done_earlier) | set(self.failed_earlier)
                      | set(self.complete))

    def lines(self) -> list[str]:
        counts = [
            f"{name}: done now {self.done[name]}, failed now {self.failed[name]}, done earlier "
            f"{self.done_earlier[name]}, failed earlier {self.failed_earlier[name]}"
            + (f" ({self.retried[name]} earlier failures retried)" if self.retried[name] else "")
            + f", store complete: {self.complete.get(name, False)}"
            for name in self.names
        ]
        if any(self.failed.values()) or any(self.failed_earlier.values()):
            counts.append(f"failed clips and their errors: `make info STORE={self.store}` (python -m extract info "
                          f"--store {self.store}); after fixing the files, rerun with --retry-failed (RETRY_FAILED=1)")
        timing = ", ".join(f"{k} {v:.2f}" for k, v in sorted(self.seconds.items()))
        return counts + ([f"time (s): {timing}"] if timing else [])

    def exit_status(self, fail_on_error: bool) -> tuple[int, str]:
        """0 when the run completed, recorded per-clip failures included; 1 (with the reason) when an extractor has
        no embedded clip at all in this shard, or with ``fail_on_error`` when any clip failed (now or earlier)."""
        empty = [n for n in self.names if self.done[n] + self.done_earlier[n] == 0
                 and self.failed[n] + self.failed_earlier[n] > 0]
        if empty:
            return 1, f"nothing could be embedded for {', '.join(empty)}: every clip failed"
        n_failed = sum(self.failed.values()) + sum(self.failed_earlier.values())
        if fail_on_error and n_failed:
            return 1, f"--fail-on-error: {n_failed} clip failure(s) recorded"
        return 0, ""


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
        probes = list(pool.map(probe_timeline, manifest.clips))
    rel = lambda p: "" if p is None else _relative_or_absolute(Path(p), manifest.root)  # noqa: E731
    coverage = [timeline.coverage() for timeline, _ in probes]
    return ClipTable(
        ids=np.array([c.clip_id for c in manifest.clips], dtype=str),
        labels=np.array([c.label for c in manifest.clips], dtype=str),
        splits=np.array([c.split for c in manifest.clips], dtype=str),
        n_seconds=np.array([timeline.n_seconds for timeline, _ in probes], dtype=np.int32),
        video_paths=np.array([rel(c.video_path) for c in manifest.clips], dtype=str),
        audio_paths=np.array([rel(c.audio_path) for c in manifest.clips], dtype=str),
        probe_errors=np.array([e for _, e in probes], dtype=str),
        duration_s=np.array([c["duration_s"] for c in coverage], dtype=np.float32),
        seconds_covered=np.array([c["seconds_covered"] for c in coverage], dtype=np.int32),
        coverage_missing=np.array([c["missing"] for c in coverage], dtype=str),
        orientation=np.array([timeline.orientation for timeline, _ in probes], dtype=str),
    )


def _relative_or_absolute(path: Path, root: Path) -> str:
    """``path`` relative to the data root when it lies under it (lexically: a symlinked media folder is not resolved
    away), else absolute (a CSV manifest's media on another disk)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path.absolute())


def open_store(cfg: RunConfig, manifest: Manifest, targets: list[Target]) -> StoreWriter:
    """Create (single run or shard 0) or wait for (other shards) the store and every extractor/view group."""
    extractors = list({id(t.extractor): t.extractor for t in targets}.values())
    leader = cfg.shard_index == 0
    if leader:
        if store_ready(cfg.store):
            store = StoreWriter.open(cfg.store)
            store.check_run(manifest.ids(), cfg.frame_choice, manifest.taxonomy, manifest.card)
        else:
            table = build_clip_table(manifest, cfg.workers)
            per_chunk = cfg.clips_per_chunk or default_clips_per_chunk(
                int(table.n_seconds.max(initial=1)), max(e.spec.embedding_dim for e in extractors)
            )
            store = StoreWriter.create(
                cfg.store, table, taxonomy=manifest.taxonomy, data_root=str(manifest.root), clips_per_chunk=per_chunk,
                frame_choice=cfg.frame_choice, card=manifest.card,
            )
        _refuse_training_leak(store, extractors)
        for t in targets:
            store.prepare_group(
                t.name, spec=t.extractor.spec.to_dict(), fingerprint=t.fingerprint, weights=t.extractor.weights_id,
                overwrite=cfg.overwrite, view=t.view_name, inference=t.extractor.options.to_dict(),
                extra_attrs=t.extra_attrs(),
            )
        return store
    wait_until_ready(cfg.store, cfg.wait_timeout_s)
    store = StoreWriter.open(cfg.store)
    store.check_clip_ids([c.clip_id for c in manifest.clips])
    store.check_frame_choice(cfg.frame_choice)
    for t in targets:
        wait_for_group(cfg.store, t.name, t.fingerprint, cfg.wait_timeout_s, view=t.view_name)
    return StoreWriter.open(cfg.store)  # reopened: the groups shard 0 created meanwhile are listed


def _refuse_training_leak(store: StoreWriter, extractors: list[Extractor]) -> None:
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
    decode_device, backend = _decode_device(cfg, extractors)
    targets = build_targets(extractors, cfg.views, cfg.frame_choice)
    modalities = {e.spec.modality for e in extractors}
    manifest = read_manifest(cfg.data, require=_required_files(modalities), classes=cfg.classes, groups=cfg.groups)
    with ShardLock(cfg.store, cfg.shard_index, cfg.shard_count, wait=cfg.wait_for_lock) as lock:
        return _extract_shard(cfg, manifest, targets, lock, decode_device, backend)


def _extract_shard(cfg: RunConfig, manifest: Manifest, targets: list[Target], lock: ShardLock, decode_device: str,
                   backend: DecodeBackend) -> RunSummary:
    """The body of :func:`run_extraction`, run while this process holds the shard's lock (``decode_device`` and
    ``backend``: :func:`_decode_device`'s answer)."""
    store = open_store(cfg, manifest, targets)
    clip_by_id = {c.clip_id: c for c in manifest.clips}
    clips = store.clips
    summary = RunSummary(store=cfg.store)

    shard = (cfg.shard_index, cfg.shard_count)
    if cfg.retry_failed:
        for t in targets:
            summary.retried[t.key] = store.reset_failed(t.name, *shard, view=t.view_name)
    pending = {t.key: set(pending_blocks(store, t.name, *shard, view=t.view_name)) for t in targets}
    todo_rows = {t.key: store.status(t.name, t.view_name) == PENDING for t in targets}  # (N,) bool per target
    for t in targets:
        earlier = count_status(store, t.name, *shard, view=t.view_name)
        summary.done_earlier[t.key], summary.failed_earlier[t.key] = earlier[DONE], earlier[FAILED]
    blocks = sorted(set().union(*pending.values()))
    rows_of = {b: _pending_rows(store.block_slice(b), todo_rows.values()) for b in blocks}
    long_rows = {b: rows[clips.n_seconds[rows] > STREAM_CLIP_SECONDS] for b, rows in rows_of.items()}
    rows_of = {b: rows[clips.n_seconds[rows] <= STREAM_CLIP_SECONDS] for b, rows in rows_of.items()}
    total_clips = sum(len(r) for r in rows_of.values()) + sum(len(r) for r in long_rows.values())
    logger.info("%s: %d blocks (%d clips) to do in shard %d/%d", cfg.store, len(blocks), total_clips,
                cfg.shard_index, cfg.shard_count)

    progress = progress_bar(desc="extract", unit="clip", total=total_clips, enabled=cfg.progress)
    codec_threads = codec_threads_per_worker(cfg.workers)
    logger.info("decoding on %s with %d %s worker(s), %d codec thread(s) each", decode_device, cfg.workers, backend,
                codec_threads)
    with decode_pool(cfg.workers, backend) as pool:
        def submit(block: int) -> list[Future]:
            plan = DecodePlan.for_specs([t.extractor.spec for t in targets if block in pending[t.key]], cfg.frame_choice)
            return [
                pool.submit(decode_clip, clip_by_id[str(clips.ids[i])], int(clips.n_seconds[i]), plan,
                            str(clips.probe_errors[i]), codec_threads, decode_device)
                for i in rows_of[block]
            ]

        queued = [submit(b) for b in blocks[:BLOCKS_IN_FLIGHT]]
        for position, block in enumerate(blocks):
            started = time.perf_counter()
            decoded = [f.result() for f in queued.pop(0)]
            summary.seconds["decode_wait"] += time.perf_counter() - started
            summary.seconds["decode"] += sum(d.decode_seconds for d in decoded)
            if position + BLOCKS_IN_FLIGHT < len(blocks):
                queued.append(submit(blocks[position + BLOCKS_IN_FLIGHT]))
            for view in (None, *cfg.views):
                todo = [t for t in targets if t.view == view and block in pending[t.key]]
                inputs = decoded
                if view is not None and todo:
                    started = time.perf_counter()
                    inputs = [augment_clip(d, view) for d in decoded]
                    summary.seconds["augment"] += time.perf_counter() - started
                for t in todo:
                    mine = np.flatnonzero(todo_rows[t.key][rows_of[block]])  # a retry may differ per target
                    rows = rows_of[block][mine]
                    started = time.perf_counter()
                    result = embed_block(t.extractor, [inputs[k] for k in mine], store.seconds_max)
                    summary.model_seconds[t.key] += time.perf_counter() - started
                    summary.seconds["model"] += time.perf_counter() - started
                    started = time.perf_counter()
                    store.write_rows(t.name, rows, result, view=t.view_name)
                    summary.seconds["write"] += time.perf_counter() - started
                    _count(summary, t.key, result, clips.ids[rows])
            progress.update(len(decoded))
            for i in long_rows[block]:
                todo = [t for t in targets if block in pending[t.key] and todo_rows[t.key][i]]
                started = time.perf_counter()
                results = embed_long_clip(clip_by_id[str(clips.ids[i])], int(clips.n_seconds[i]), todo, store.seconds_max,
                                          cfg.frame_choice)
                summary.seconds["streamed"] += time.perf_counter() - started
                for t in todo:
                    store.write_rows(t.name, np.array([i]), results[t.key], view=t.view_name)
                    _count(summary, t.key, results[t.key], clips.ids[[i]])
                progress.update(1)
            lock.refresh()
    progress.close()
    for t in targets:
        summary.complete[t.key] = store.finalize_if_complete(t.name, t.view_name)
    return summary


def _decode_device(cfg: RunConfig, extractors: list[Extractor]) -> tuple[str, DecodeBackend]:
    """The decoder that runs (``cfg.decode_device`` resolved) and the worker backend: NVDEC decodes in threads of this
    process (its frames stay in this process's GPU memory). ``auto`` decodes on the CPU where ``cuda`` would be refused.

    Raises:
        DeviceError: ``cuda`` without a CUDA device or torchcodec, with augmented views, or with models off the GPU.
    """
    from extract.gpu_decode import resolve_decode_device

    device = resolve_decode_device(cfg.decode_device)
    off_gpu = [e.spec.name for e in extractors if not e.device.startswith("cuda")]
    refused = ""
    if cfg.views:
        refused = "augmented views (--views) transform frames on the CPU"
    elif off_gpu:
        refused = f"the models must be on the GPU (--device cuda); {', '.join(off_gpu)} run on {extractors[0].device}"
    if device == "cuda" and refused and cfg.decode_device == "auto":
        logger.info("decode device: cpu (%s)", refused)
        device = "cpu"
    if device == "cpu":
        return device, cfg.decode_backend
    if refused:
        raise DeviceError(f"--decode-device cuda: {refused}; decode with --decode-device cpu")
    return device, "thread"


def embed_long_clip(clip: Clip, n_seconds: int, targets: list[Target], seconds_max: int,
                    frame_choice: str) -> dict[str, BlockResult]:
    """Every target's one-row result for a long clip, decoded and embedded ``STREAM_CHUNK_SECONDS`` at a time, one
    modality after the other (a modality that cannot be decoded fails its targets only, as in :func:`decode_clip`)."""
    results = {t.key: _empty_result(t.extractor, seconds_max) for t in targets}
    timeline, probe_error = probe_timeline(clip)
    for modality in ("visual", "audio"):
        mine = [t for t in targets if t.extractor.spec.modality == modality]
        if not mine:
            continue
        plan = DecodePlan.for_specs([t.extractor.spec for t in mine], frame_choice)
        try:
            if n_seconds != timeline.n_seconds:
                raise MediaError(f"{clip.video_path}: {timeline.n_seconds} s now, {n_seconds} s when the store was "
                                 f"created{': ' + probe_error if probe_error else ''}")
            for decoded in iter_decoded(clip, plan, timeline, STREAM_CHUNK_SECONDS):
                for view in dict.fromkeys(t.view for t in mine):
                    inputs = decoded if view is None else augment_clip(decoded, view)
                    for t in (t for t in mine if t.view == view):
                        chunk = embed_block(t.extractor, [inputs], seconds_max)
                        _place(results[t.key], chunk, decoded.start_s, len(inputs.input_for(t.extractor.spec)))
        except Exception as err:  # any failure is this clip's, never the run's
            for t in mine:
                _fail(results[t.key], "decode", describe_error(err, clip.video_path if modality == "visual" else audio_source(clip)))
    return results


def _empty_result(extractor: Extractor, seconds_max: int) -> BlockResult:
    """A one-row result, done, with nothing embedded yet."""
    return BlockResult(np.zeros((1, seconds_max, extractor.spec.embedding_dim), np.float32), np.zeros((1, seconds_max), bool),
                       np.full(1, DONE, np.int8), np.array([""]).astype(object), np.array([""]).astype(object),
                       np.zeros(1, np.float32))


def _place(result: BlockResult, chunk: BlockResult, start_s: int, count: int) -> None:
    """Copy one chunk's seconds (its row 0, seconds ``0..count-1``) into ``result`` at ``start_s``; a failed chunk
    fails the clip."""
    result.embeddings[0, start_s : start_s + count] = chunk.embeddings[0, :count]
    result.valid[0, start_s : start_s + count] = chunk.valid[0, :count]
    result.extract_seconds[0] += chunk.extract_seconds[0]
    if chunk.status[0] == FAILED and result.status[0] != FAILED:
        _fail(result, str(chunk.error_stage[0]), f"seconds {start_s}..{start_s + count - 1}: {chunk.error_message[0]}")


def _fail(result: BlockResult, stage: str, message: str) -> None:
    result.status[0], result.error_stage[0], result.error_message[0] = FAILED, stage, message
    result.valid[0] = False


def extract(data: str | Path, store: str | Path, extractors: str | Sequence[str | Extractor],
            **options: Any) -> RunSummary:
    """Embed every clip of a dataset into a store (:func:`run_extraction`; resumable: a rerun does what is left).

    Args:
        data: A TAU-layout folder (with ``meta.csv``) or a CSV manifest.
        store: The store's path (or fsspec URL); created on first use.
        extractors: Comma list or list of registry names and aliases, or built extractors (the run builds its own
            of the same names, on their device unless ``device`` is given).
        **options: Any other field of :class:`RunConfig` (``device="cpu"``, ``progress=False``, ``classes=...``,
            ``batch_size=...``, ``views=...``).

    Returns:
        What the run did, per extractor (``summary.lines()``; failed clips are recorded in the store).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from avscene import extract
        >>> from avscene.demo.synthetic import make_demo_dataset
        >>> folder = Path(tempfile.mkdtemp())
        >>> data = make_demo_dataset(folder / "data", clips_per_scene=1, seconds=2, width=32, height=24)
        >>> summary = extract(data, folder / "emb.zarr", "debug_visual,debug_audio", device="cpu", progress=False)
        >>> dict(summary.done), summary.complete
        ({'debug_visual': 10, 'debug_audio': 10}, {'debug_visual': True, 'debug_audio': True})
    """
    if not isinstance(extractors, str):
        built = [e for e in extractors if isinstance(e, Extractor)]
        if built:
            options.setdefault("device", built[0].device)
        extractors = [e.spec.name if isinstance(e, Extractor) else e for e in extractors]
    return run_extraction(RunConfig(data=Path(data), store=str(store), extractors=tuple(resolve_names(extractors)),
                                    **options))


def embed_block(extractor: Extractor, decoded: list[DecodedClip], seconds_max: int) -> BlockResult:
    """Embed all seconds of a block's clips in batches (``extractor.options.batch_size``) across clips."""
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
        outputs = _embed_clips(extractor, inputs)
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
            valid[i, : len(x)] = decoded[i].valid_for(spec, len(x))
    return BlockResult(embeddings, valid, status, stage.astype(str), message.astype(str), seconds)


def _embed_clips(extractor: Extractor, inputs: list[np.ndarray]) -> list[np.ndarray | Exception]:
    """Each clip's ``(seconds, D)`` embeddings, batched across clips; when a batch raises, the clips are retried
    one by one so that only those that fail get their exception (recorded as a per-clip ``model`` error)."""
    try:
        out = embed_batched(extractor, _concatenate(inputs))
        return list(np.split(out, np.cumsum([len(x) for x in inputs])[:-1]))
    except Exception as err:  # a model error must cost only the clips that cause it
        logger.warning("%s: a batch failed (%s); retrying its %d clips one by one", extractor.spec.name, err, len(inputs))
    results: list[np.ndarray | Exception] = []
    for x in inputs:
        try:
            results.append(embed_batched(extractor, x))
        except Exception as err:
            results.append(err)
    return results


def _concatenate(inputs: list) -> np.ndarray | torch.Tensor:
    """Clips' inputs as one batch: numpy arrays, or tensors where frames were decoded on the GPU."""
    if isinstance(inputs[0], np.ndarray):
        return np.concatenate(inputs)
    import torch

    return torch.cat(inputs)


def _pending_rows(block: slice, todo: Iterable[np.ndarray]) -> np.ndarray:
    """Rows of ``block`` pending for at least one target: the whole block, except in a --retry-failed run."""
    rows = np.arange(block.start, block.stop)
    return rows[np.logical_or.reduce([t[block] for t in todo])]


def _required_files(modalities: set[str]) -> tuple[str, ...]:
    """Media kinds the manifest must find on disk: video for visual extractors, audio for audio ones."""
    return tuple(kind for kind, modality in (("video", "visual"), ("audio", "audio")) if modality in modalities)


def _count(summary: RunSummary, name: str, result: BlockResult, ids: np.ndarray) -> None:
    summary.done[name] += int((result.status == DONE).sum())
    summary.failed[name] += int((result.status == FAILED).sum())
    for i in np.flatnonzero(result.status == FAILED):
        summary.errors.append((name, str(ids[i]), str(result.error_stage[i]), str(result.error_message[i])))


__all__ = ["RunConfig", "RunSummary", "run_extraction", "parse_shard", "shard_from_env", "StoreError"]
