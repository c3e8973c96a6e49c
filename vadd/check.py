"""``vadd check``: does one video's picture match its sound? Per-second scene probabilities and mismatch.

The video is decoded and embedded in chunks of seconds (bounded memory however long it is) by the decode-and-embed
path of extraction (:func:`extract.embed.iter_embeddings`, with the frame choice of the heads' store) with the
extractors the run's heads were trained on; the visual-only and audio-only heads give per-second logits, scaled by
the temperatures the run fitted; the per-second mismatch score ``-log sum_c p_visual(c) p_audio(c)`` (nats) is searched
for segments with the run's verdict rule (:mod:`vadd.rule`): the video is manipulated when any segment passes.

Only the seconds that both streams cover are judged (on the file's presentation timeline: a soundtrack starting
late or ending early, a truncated file); what was judged of the file's duration, and why the rest was not, is in the
result's ``coverage``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from classify.calibration import log_softmax
from classify.data import ClipSet
from classify.metrics import clip_vote
from classify.persist import load_head
from classify.train import TrainedHead
from extract.decode_plan import DecodePlan, common_timeline, frame_fingerprint, video_probe_error
from extract.embed import iter_embeddings
from avscene.errors import AvsceneError, MediaError
from extract.extractor import Extractor, create_extractor
from extract.manifest import Clip
from avscene.paths import cache_dir
from avscene.progress import progress_bar
from avscene.run_folder import require_finished
from avscene.textfiles import csv_rows, read_json
from extract.store import FRAME_CHOICES, EmbeddingStore, store_exists
from vadd.evaluate import HEADS_FILE
from vadd.rule import RULE_NAME, VerdictRule
from vadd.score import MISMATCH_DEFINITION, second_mismatch
from vadd.segments import Segment, SegmentParams, with_threshold

logger = logging.getLogger(__name__)



def heads_registry() -> Path:
    """``$AVSCENE_HEADS_REGISTRY`` or ``cache/runs/vadd-heads.json``: the last ``vadd eval`` run folder, whose heads
    ``vadd check`` uses by default."""
    return Path(os.environ.get("AVSCENE_HEADS_REGISTRY") or cache_dir() / "runs" / "vadd-heads.json")


def register_heads(run_dir: Path) -> None:
    """Make ``run_dir`` (a finished ``vadd eval`` run) the default heads of ``vadd check``; the CLI's ``vadd eval``
    and the demo both call this, so ``check`` needs to know neither's layout."""
    registry = heads_registry()
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps({"heads": str(Path(run_dir).resolve())}, indent=2) + "\n")


def default_heads_dir() -> Path:
    """The run folder last registered by :func:`register_heads` (``make vadd-eval`` or ``make demo``)."""
    registry = heads_registry()
    if not registry.is_file():
        raise FileNotFoundError(f"no VADD heads registered in {registry}: run `make vadd-eval` (or `make demo`), "
                                "or pass --heads RUN")
    run_dir = Path(read_json(registry)["heads"])
    if not (run_dir / HEADS_FILE).is_file():
        raise FileNotFoundError(f"{registry} names {run_dir}, which holds no {HEADS_FILE} (moved or deleted?): rerun "
                                "`make vadd-eval` (or `make demo`), or pass --heads RUN")
    return run_dir


@dataclass
class CheckResult:
    """Per-second logits ``(T, K)`` of both heads and what the run's temperatures and verdict rule make of them."""

    video: str
    audio: str
    classes: tuple[str, ...]
    logits_visual: np.ndarray
    logits_audio: np.ndarray
    temperatures: dict[str, float]  # "visual", "audio"
    rule: VerdictRule
    threshold_source: str
    heads: dict = field(default_factory=dict)  # which heads answered: see :func:`heads_provenance`
    coverage: dict = field(default_factory=dict)  # what of the file was judged: see extract.decode_plan.Timeline.coverage

    @property
    def threshold(self) -> float:
        return self.rule.threshold

    @functools.cached_property
    def p_visual(self) -> np.ndarray:
        """Calibrated per-second probabilities ``(T, K)`` of the visual head."""
        return np.exp(log_softmax(self.logits_visual, self.temperatures["visual"]))

    @functools.cached_property
    def p_audio(self) -> np.ndarray:
        return np.exp(log_softmax(self.logits_audio, self.temperatures["audio"]))

    @functools.cached_property
    def mismatch(self) -> np.ndarray:
        """Per-second mismatch score ``(T,)`` in nats."""
        return second_mismatch(self.logits_visual, self.logits_audio, self.temperatures["visual"],
                               self.temperatures["audio"])

    @functools.cached_property
    def segments(self) -> list[Segment]:
        return self.rule.find(self.mismatch)

    @property
    def verdict(self) -> str:
        return "manipulated" if self.segments else "consistent"

    def voted(self, probs: np.ndarray) -> str:
        return self.classes[int(clip_vote(probs[None], np.ones((1, len(probs)), bool))[0])]

    def to_dict(self) -> dict:
        visual, audio = self.voted(self.p_visual), self.voted(self.p_audio)
        score = self.rule.score(self.mismatch)
        return {
            "video": self.video, "audio": self.audio, "n_seconds": len(self.mismatch), "classes": list(self.classes),
            "visual": {"class": visual, "temperature": self.temperatures["visual"],
                       "per_second": np.round(self.p_visual, 5).tolist()},
            "audio_scene": {"class": audio, "temperature": self.temperatures["audio"],
                            "per_second": np.round(self.p_audio, 5).tolist()},
            "mismatch": {"unit": "nats", "definition": MISMATCH_DEFINITION, "detection_score": score,
                         "per_second": np.round(self.mismatch, 5).tolist()},
            "segments": [s.to_dict() for s in self.segments],
            "verdict": self.verdict,
            "probability_manipulated": float(self.rule.probability(score)) if self.rule.calibrated else None,
            "decided_by": {"rule": RULE_NAME, "score": "mismatch_score", "segments": self.rule.segments.to_dict(),
                           "threshold_source": self.threshold_source},
            "threshold": self.threshold, "threshold_source": self.threshold_source,
            "paper_rule": {"manipulated": visual != audio, "rule": "voted visual class != voted audio class"},
            "heads": self.heads,
            "coverage": self.coverage,
            "timestamps_s": (self.coverage.get("first_second", 0) + np.arange(len(self.mismatch)) + 0.5).tolist(),
        }


def verdict_line(summary: dict) -> str:
    """``manipulated: 8.0–14.0 s (score 5.31 nats); probability 0.99; ...`` or ``consistent: ...`` from
    :meth:`CheckResult.to_dict`."""
    if summary["segments"]:
        found = ", ".join(f"{s['start_s']:.1f}–{s['end_s']:.1f} s (score {s['score']:.3g})" for s in summary["segments"])
        head = f"manipulated: {found}"
    else:
        head = (f"consistent: no segment reaches the threshold (highest detection score "
                f"{summary['mismatch']['detection_score']:.3g})")
    probability = summary["probability_manipulated"]
    return (f"{head}; threshold {summary['threshold']:.3g} nats; probability manipulated "
            f"{'not calibrated' if probability is None else f'{probability:.3f}'}; visual {summary['visual']['class']}, audio "
            f"{summary['audio_scene']['class']}")


def heads_provenance(run_dir: Path, heads_meta: dict) -> dict:
    """Which heads answer, as their VADD run folder records it: the store and dataset they were trained on (synthetic
    or not, from its card), their extractors and their figures on the run's test split (``config.json``,
    ``heads.json``, ``metrics.json``)."""
    def recorded(name: str) -> dict:
        path = run_dir / name
        return read_json(path) if path.is_file() else {}

    store, metrics = recorded("config.json").get("store"), recorded("metrics.json")
    accuracy = metrics.get("classification_clip_accuracy", {})
    dataset = heads_meta.get("dataset")  # recorded by `vadd eval`; runs written before it: read from the store
    if dataset is None and store and store_exists(store):
        opened = EmbeddingStore.open(store)
        dataset = {"folder": opened.data_root, "synthetic": opened.dataset_card.synthetic}
    return {
        "run": str(run_dir), "store": store,
        "dataset": dataset["folder"] if dataset else None,
        "synthetic_dataset": dataset["synthetic"] if dataset else None,
        "class_set": heads_meta.get("class_set"),
        "extractors": {m: heads_meta[m]["extractors"] for m in ("visual", "audio")},
        "test_split": {
            "vsc_clip_accuracy": accuracy.get("vsc"), "asc_clip_accuracy": accuracy.get("asc"),
            "verdict_rule": RULE_NAME,
            "verdict_rule_f1": metrics.get("mismatch_score", {}).get("f1"),
            "vadd_roc_auc": metrics.get("mismatch_score", {}).get("roc_auc"),
            "vadd_f1_paper_rule": metrics.get("paper_rule", {}).get("f1"),
            "n_items": metrics.get("n_items"), "n_manipulated": metrics.get("n_manipulated"),
        } if metrics else None,
    }


def provenance_line(heads: dict) -> str:
    """One line naming the heads that answered and their test-split figures: those of the rule that makes the verdict
    (the paper rule's F1 stays in ``check.json``)."""
    figures = heads.get("test_split") or {}
    shown = ", ".join(f"{label} {figures[key]:.2f}" for key, label in (
        ("vsc_clip_accuracy", "VSC acc"), ("asc_clip_accuracy", "ASC acc"), ("verdict_rule_f1", "verdict-rule F1"),
        ("vadd_roc_auc", "AUC")) if figures.get(key) is not None)
    kind = {True: "SYNTHETIC dataset", False: "dataset", None: "dataset (synthetic or not: unknown)"}[
        heads.get("synthetic_dataset")]
    line = (f"heads: {heads.get('run')} ({kind} {heads.get('dataset') or heads.get('store') or 'not recorded'}; "
            f"test split: {shown or 'no metrics recorded'})")
    if heads.get("synthetic_dataset"):
        line += "\n!!! these heads learnt SYNTHETIC scenes: their verdict on a real video means nothing; train heads on " \
                "real data (`make vadd-eval STORE=...`) !!!"
    return line


def read_run_meta(heads_dir: Path) -> dict:
    """``heads.json`` of a finished ``vadd eval`` run folder that has a verdict rule.

    Raises:
        FileNotFoundError: not a VADD run folder. RunFolderError: not finished, or a file changed since.
        ValueError: written before calibrated scores and segments.
    """
    meta_path = Path(heads_dir) / HEADS_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: not a VADD run folder (written by `python -m vadd eval`)")
    require_finished(heads_dir, f"python -m vadd eval --out {heads_dir}` with the run's options (its "
                                "config.json), or `make vadd-eval")
    meta = read_json(meta_path)
    if "rule" not in meta:
        raise ValueError(f"{meta_path}: written before calibrated scores and segments (its threshold is on the old "
                         "0-1 mismatch score); rerun `vadd eval` (or `make demo`) to get heads `vadd check` can use")
    return meta


class Checker:
    """A visual (VSC) and an audio (ASC) scene head with their extractors, built once for many videos.

    Build it from a ``vadd eval`` run folder (:meth:`from_run`) or from two heads just trained (:meth:`from_heads`).
    """

    def __init__(self, heads: dict[str, TrainedHead], rule: VerdictRule, temperatures: dict[str, float],
                 threshold_source: str, window_seconds: int, device: str = "auto", chunk_seconds: int = 30,
                 provenance: dict | None = None):
        if chunk_seconds < 1 or window_seconds < 1:
            raise ValueError(f"chunk_seconds and window_seconds must be >= 1, got {chunk_seconds} and {window_seconds}")
        self.rule, self.temperatures, self.threshold_source = rule, temperatures, threshold_source
        self.chunk_seconds = chunk_seconds
        self.window_seconds = int(window_seconds)
        self.heads = heads
        self.extractors: dict[str, list[Extractor]] = {
            modality: [create_extractor(n, device=device) for n in head.extractors] for modality, head in self.heads.items()
        }
        self.frame_choice = self._recorded_frame_choice()
        self.provenance = provenance or {}

    @classmethod
    def from_run(cls, heads_dir: Path, device: str = "auto", chunk_seconds: int = 30) -> "Checker":
        """The heads, threshold and window of a ``vadd eval`` run folder.

        Examples:
            A run folder comes from ``python -m vadd eval`` (``make vadd-eval``), whose run is too long for a doctest
            (tests/test_vadd_run.py builds one and checks videos with it), hence not run here:

            >>> from avscene import Checker
            >>> from avscene.paths import runs_dir
            >>> checker = Checker.from_run(runs_dir() / "vadd-10cls", device="cpu")  # doctest: +SKIP
            >>> checker.check("phone.mp4").to_dict()["verdict"]  # doctest: +SKIP
            'consistent'
        """
        heads_dir = Path(heads_dir)
        meta = read_run_meta(heads_dir)
        meta_path = heads_dir / HEADS_FILE
        heads = {m: load_head(heads_dir / meta[m]["head"]) for m in ("visual", "audio")}
        temperatures = {m: float(meta[m]["temperature"]) for m in ("visual", "audio")}
        return cls(heads, VerdictRule.from_dict(meta["rule"]), temperatures, f"{meta['threshold_source']} ({meta_path})",
                   int(meta["window_seconds"]), device, chunk_seconds, heads_provenance(heads_dir, meta))

    @classmethod
    def from_heads(cls, visual: TrainedHead, audio: TrainedHead, threshold: float, window_seconds: int = 10,
                   device: str = "auto", chunk_seconds: int = 30, segments: SegmentParams | None = None) -> "Checker":
        """Two heads of the same classes (e.g. from :func:`classify.train.train_head`) and a mismatch threshold.

        The heads are used as trained (temperature 1) and no probability is fitted: ``probability_manipulated`` is
        ``None``. ``vadd eval`` (:meth:`from_run`) calibrates both and chooses the threshold on validation.

        Args:
            visual: The visual scene head (trained on visual extractors).
            audio: The audio scene head.
            threshold: A video is ``manipulated`` when a segment of its per-second mismatch
                (:func:`vadd.score.second_mismatch`, nats) reaches this.
            window_seconds: The heads see windows of this many seconds: their training clips' length.
            segments: Smoothing, minimum duration and hysteresis of the segments (default: none of them, 1 s).

        Examples:
            >>> import tempfile
            >>> from pathlib import Path
            >>> from avscene import Checker, extract, open_store, train_head
            >>> from avscene.demo.synthetic import make_demo_dataset
            >>> folder = Path(tempfile.mkdtemp())
            >>> data = make_demo_dataset(folder / "data", clips_per_scene=1, seconds=2, width=32, height=24)
            >>> _ = extract(data, folder / "emb.zarr", "debug_visual,debug_audio", device="cpu", progress=False)
            >>> reader = open_store(folder / "emb.zarr")
            >>> visual = train_head(reader.load("train", "debug_visual"), epochs=3, progress=False)
            >>> audio = train_head(reader.load("train", "debug_audio"), epochs=3, progress=False)
            >>> checker = Checker.from_heads(visual, audio, threshold=0.5, window_seconds=2, device="cpu")
            >>> video = sorted((data / "video").glob("*.mp4"))[0]
            >>> result = checker.check(video, audio=data / "audio" / f"{video.stem}.wav")
            >>> result.p_visual.shape, result.mismatch.shape, result.to_dict()["verdict"] in ("consistent", "manipulated")
            ((2, 10), (2,), True)
        """
        if visual.classes != audio.classes:
            raise ValueError(f"the heads have different classes: visual {visual.classes}, audio {audio.classes}")
        if not threshold >= 0.0:
            raise ValueError(f"threshold must be a mismatch in nats (>= 0), got {threshold}")
        heads = {"visual": visual, "audio": audio}
        params = with_threshold(segments or SegmentParams(threshold), threshold)
        provenance = {"run": None, "extractors": {m: list(h.extractors) for m, h in heads.items()}}
        return cls(heads, VerdictRule(params, None, None), {"visual": 1.0, "audio": 1.0}, "given to Checker.from_heads",
                   window_seconds, device, chunk_seconds, provenance)

    def _recorded_frame_choice(self) -> str:
        """The frame choice of the store the heads were trained on, read from their fingerprints (which include it)."""
        for choice in FRAME_CHOICES:
            if all(head.fingerprints.get(e.spec.name) == frame_fingerprint(e.fingerprint, e.spec, choice)
                   for modality, head in self.heads.items() for e in self.extractors[modality]):
                return choice
        for modality, head in self.heads.items():  # raises the fingerprint error that names the extractor
            head.check_fingerprints({e.spec.name: e.fingerprint for e in self.extractors[modality]})
        raise AssertionError("unreachable: the heads' fingerprints matched no frame choice")

    def check(self, video: Path, audio: Path | None = None, progress: bool = True) -> CheckResult:
        """Score one video (its own soundtrack, or ``audio``) on the seconds both streams cover; ``progress``: a bar of
        seconds done on a terminal."""
        video = Path(video)
        sound = Path(audio) if audio is not None else video
        windows = {m: HeadWindows(self.window_seconds, functools.partial(self._score, m, str(video))) for m in self.heads}
        extractors = [e for es in self.extractors.values() for e in es]
        clip = Clip(str(video), "", "", video, None if audio is None else sound)
        try:
            timeline = common_timeline(clip, DecodePlan.for_specs([e.spec for e in extractors], self.frame_choice))
            bar = progress_bar(desc=f"check {video.name}", unit="s", total=timeline.n_seconds, enabled=progress,
                               leave=False)
            for chunk in iter_embeddings(clip, extractors, self.chunk_seconds, self.frame_choice, timeline):
                judged = np.logical_and.reduce(list(chunk.valid.values()))
                for modality, modality_extractors in self.extractors.items():
                    windows[modality].add({e.spec.name: chunk.embeddings[e.spec.name][judged] for e in modality_extractors})
                bar.update(chunk.n_seconds)
            bar.close()
        except MediaError as err:
            if audio is None and str(err).endswith("no audio stream"):
                raise MediaError(f"{video}: the video has no audio track; pass --audio FILE to check it against one") from None
            raise
        return CheckResult(str(video), str(sound), self.heads["visual"].classes, windows["visual"].finish(),
                           windows["audio"].finish(), self.temperatures, self.rule, self.threshold_source, self.provenance,
                           coverage=timeline.coverage())

    def _score(self, modality: str, clip_id: str, features: dict[str, np.ndarray]) -> np.ndarray:
        """The modality's head on one window of embeddings ``{name: (T, D)}``: logits ``(T, K)``."""
        head, extractors = self.heads[modality], self.extractors[modality]
        seconds = len(next(iter(features.values())))
        clips = ClipSet(np.array([clip_id]), np.array([""]), np.array([-1]), head.classes,
                        {name: x[None] for name, x in features.items()}, np.ones((1, seconds), bool),
                        {e.spec.name: e.fingerprint for e in extractors}, {e.spec.name: e.spec.modality for e in extractors})
        return head.predict_logits(clips)[0]


class HeadWindows:
    """Applies a head to consecutive windows of ``window_seconds`` as embeddings arrive in chunks of any size.

    The heads attend over the seconds of one clip, so they see windows of their training clips' length;
    the windows are fixed in time, hence the answer does not depend on the decode chunk size.
    """

    def __init__(self, window_seconds: int, score: Callable[[dict[str, np.ndarray]], np.ndarray]) -> None:
        self.window_seconds, self.score = window_seconds, score
        self.pending: dict[str, np.ndarray] = {}
        self.scored: list[np.ndarray] = []

    def add(self, features: dict[str, np.ndarray]) -> None:
        """Queue ``{name: (T, D)}`` embeddings of the next seconds; score every full window."""
        if not len(next(iter(features.values()))):
            return
        self.pending = {k: np.concatenate([self.pending[k], v]) if k in self.pending else v for k, v in features.items()}
        while len(next(iter(self.pending.values()))) >= self.window_seconds:
            self.scored.append(self.score({k: v[: self.window_seconds] for k, v in self.pending.items()}))
            self.pending = {k: v[self.window_seconds :] for k, v in self.pending.items()}

    def finish(self) -> np.ndarray:
        """The head's answer ``(T, K)`` for every second added (the last, shorter window included)."""
        if self.pending and len(next(iter(self.pending.values()))):
            self.scored.append(self.score(self.pending))
            self.pending = {}
        return np.concatenate(self.scored)


def write_timeline_png(path: Path, result: CheckResult) -> None:
    """Visual scene row, audio scene row (calibrated per-second probabilities) and the mismatch curve (nats) with the
    threshold; the verdict rule's segments are shaded on every row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds, k = result.p_visual.shape
    fig, axes = plt.subplots(3, 1, figsize=(max(6.0, min(18.0, 2.0 + 0.25 * seconds)), 2.2 + 0.5 * k), sharex=True,
                             gridspec_kw={"height_ratios": [k, k, max(3, k // 2)]})
    extent = (0, seconds, k - 0.5, -0.5)
    for ax, probs, name in ((axes[0], result.p_visual, "visual"), (axes[1], result.p_audio, "audio")):
        ax.imshow(probs.T, aspect="auto", cmap="Greens", vmin=0, vmax=1, extent=extent, interpolation="nearest")
        ax.set_yticks(range(k), result.classes, fontsize=7)
        ax.set_ylabel(name, fontsize=9)
        ax.set_title(f"{name} scene: {result.voted(probs)} (vote)", fontsize=9, loc="left")
    mismatch = result.mismatch
    axes[2].step(np.arange(seconds + 1), np.append(mismatch, mismatch[-1]), where="post", label="mismatch (nats)")
    axes[2].axhline(result.threshold, color="red", linestyle="--", label=f"threshold {result.threshold:.3g}")
    for number, segment in enumerate(result.segments):
        for ax in axes:
            ax.axvspan(segment.start_s, segment.end_s, color="red", alpha=0.15, lw=0,
                       label="manipulated segment" if ax is axes[2] and number == 0 else None)
    axes[2].set_ylim(0, 1.1 * max(float(mismatch.max()), result.threshold, 1e-3))
    axes[2].set_xlabel("time (s)")
    axes[2].set_ylabel("mismatch", fontsize=9)
    axes[2].legend(loc="upper right", fontsize=7)
    title = f"{Path(result.video).name}: {verdict_line(result.to_dict())}"
    width_chars = round(fig.get_figwidth() * 15)  # ~15 characters an inch at 8 pt
    heads = [textwrap.fill(line, width_chars) for line in provenance_line(result.heads).splitlines()] if result.heads else []
    fig.suptitle("\n".join([textwrap.fill(title, width_chars), *heads]), fontsize=8 if heads else 10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coverage_warning(summary: dict) -> str:
    """A warning line when less than the whole file was judged ('' otherwise), from a :meth:`CheckResult.to_dict`."""
    coverage = summary.get("coverage") or {}
    if not coverage.get("partial"):
        return ""
    first, n = coverage["first_second"], coverage["seconds_covered"]
    return (f"warning: judged {n} s of the file's {coverage['duration_s']:.2f} s (seconds {first}-{first + n - 1}): "
            f"{coverage['missing']}")


def output_key(video: Path) -> str:
    """A folder name for one video's outputs: its file name (extension kept) and a hash of its absolute path, so
    that two files never share a folder (``clip.mp4`` and ``clip.mov``, or two ``clip.mp4`` in other folders)."""
    video = Path(video)
    digest = hashlib.sha256(str(video.absolute()).encode()).hexdigest()[:8]
    return f"{video.name}-{digest}"


def batch_inputs(source: Path) -> list[tuple[Path, Path | None]]:
    """Every file of a folder (sorted, hidden ones aside: whether the decoder can open each is decided when it is
    checked, by probing, not by its extension), or the rows of a CSV with columns ``video`` and optional ``audio``."""
    source = Path(source)
    if source.is_dir():
        found = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        if not found:
            raise ValueError(f"{source}: the folder holds no files")
        return [(p, None) for p in found]
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such folder or CSV")
    records = csv_rows(source)
    header = [h.strip() for h in next(records, (0, []))[1]]
    if "video" not in header:
        raise ValueError(f"{source}: a batch CSV needs a 'video' column (and optionally 'audio'), got {header}")
    rows = []
    for line, values in records:
        if not any(v.strip() for v in values):
            continue
        row = dict(zip(header, (v.strip() for v in values)))
        if not row.get("video"):
            raise ValueError(f"{source}:{line}: empty video path")
        audio = row.get("audio") or None
        rows.append((source.parent / row["video"], source.parent / audio if audio else None))
    return rows


BATCH_COLUMNS = ("video", "audio", "n_seconds", "visual_class", "audio_class", "detection_score", "threshold", "verdict",
                 "segments", "probability_manipulated", "paper_rule_manipulated", "error", "duration_s", "seconds_covered",
                 "coverage_missing")


def check_batch(checker: Checker, inputs: list[tuple[Path, Path | None]], out_csv: Path, progress: bool = True) -> list[dict]:
    """Check every input, writing one CSV row each (a file that cannot be opened or checked gets its error, the batch
    goes on); the rows returned also hold each video's check (``check``: :meth:`CheckResult.to_dict`, None when it
    failed)."""
    import csv

    out_csv.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(out_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BATCH_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for video, audio in progress_bar(inputs, desc="check", unit="video", enabled=progress):
            row = {"video": str(video), "audio": str(audio or video), "check": None}
            if unopenable := video_probe_error(video):
                row["error"] = f"skipped: {unopenable}"
                logger.warning("skipped %s", unopenable)
                writer.writerow(row)
                rows.append(row)
                continue
            try:
                d = row["check"] = checker.check(video, audio, progress=False).to_dict()
                row.update(n_seconds=d["n_seconds"], visual_class=d["visual"]["class"], audio_class=d["audio_scene"]["class"],
                           detection_score=f"{d['mismatch']['detection_score']:.5f}", threshold=f"{d['threshold']:.5f}",
                           verdict=d["verdict"],
                           segments="; ".join(f"{s['start_s']:g}-{s['end_s']:g}" for s in d["segments"]),
                           probability_manipulated="" if d["probability_manipulated"] is None else f"{d['probability_manipulated']:.4f}",
                           paper_rule_manipulated=int(d["paper_rule"]["manipulated"]), error="",
                           duration_s=d["coverage"]["duration_s"], seconds_covered=d["coverage"]["seconds_covered"],
                           coverage_missing=d["coverage"]["missing"])
            except (AvsceneError, ValueError, OSError) as err:  # this file's problem; the batch goes on
                row["error"] = str(err)
                logger.warning("%s", err)
            writer.writerow(row)
            f.flush()
            rows.append(row)
    return rows
