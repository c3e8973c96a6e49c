"""The decode-and-embed path: a media file (or a manifest clip) -> per-second embeddings with timestamps.

One call for every caller that turns media into embeddings: the extraction runner (a whole clip per block,
batched across clips), ``vadd check`` (a long video chunk by chunk) and in-memory waveforms. Each second k has
one embedding per extractor; its timestamp is the centre of that second, ``k + 0.5`` s.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extract.audio_io import audio_windows, seconds_in
from extract.decode_plan import DecodedClip, DecodePlan, Timeline, audio_format, common_timeline, iter_decoded
from extract.extractor import Extractor
from extract.manifest import Clip


@dataclass(frozen=True)
class SecondEmbeddings:
    """Embeddings of consecutive seconds ``start_s .. start_s + T - 1``: ``{extractor name: (T, D) float32}``."""

    start_s: int
    embeddings: dict[str, np.ndarray]
    valid: dict[str, np.ndarray] = field(default_factory=dict)  # extractor name -> (T,) bool: its stream covers it

    @property
    def n_seconds(self) -> int:
        return len(next(iter(self.embeddings.values()))) if self.embeddings else 0

    @property
    def timestamps_s(self) -> np.ndarray:
        """``(T,)`` float64: the centre of each second, in seconds from the start of the media."""
        return self.start_s + np.arange(self.n_seconds) + 0.5

    @property
    def coverage_s(self) -> np.ndarray:
        """``(T, 2)`` float64: the ``[start, end)`` of media, in seconds, that each embedding covers."""
        starts = self.start_s + np.arange(self.n_seconds, dtype=np.float64)
        return np.stack([starts, starts + 1.0], axis=1)


def embed_batched(extractor: Extractor, inputs: np.ndarray) -> np.ndarray:
    """``(N, D)`` embeddings of ``N`` seconds' inputs, in batches of ``extractor.options.batch_size``."""
    size = extractor.options.batch_size
    return np.concatenate([extractor.embed(inputs[s : s + size]) for s in range(0, len(inputs), size)])


def embed_decoded(decoded: DecodedClip, extractors: Sequence[Extractor]) -> SecondEmbeddings:
    """Every extractor on its input among ``decoded``'s (frames or audio windows)."""
    embeddings = {e.spec.name: embed_batched(e, decoded.input_for(e.spec)) for e in extractors}
    return SecondEmbeddings(decoded.start_s, embeddings, {
        e.spec.name: decoded.valid_for(e.spec, len(embeddings[e.spec.name])) for e in extractors})


def iter_embeddings(
    clip: Clip,
    extractors: Sequence[Extractor],
    chunk_seconds: int = 30,
    frame_choice: str = "middle",
    timeline: Timeline | None = None,
) -> Iterator[SecondEmbeddings]:
    """Stream the per-second embeddings of a clip's whole seconds (its timeline's; ``valid`` marks those a stream
    does not cover), ``chunk_seconds`` at a time: memory stays bounded however long the media is.

    Args:
        clip: The media (``Clip(id, "", "", video, audio_or_None)`` for a file; ``audio_path`` None = its own track).
        extractors: Visual and/or audio extractors; each decoded input is shared by the extractors that read it.
        chunk_seconds: Seconds decoded and embedded at a time.
        frame_choice: Which frame stands for each second (``extract.store.FRAME_CHOICES``).
        timeline: The clip's :func:`extract.decode_plan.common_timeline` when the caller has it (probed otherwise).

    Raises:
        ValueError: ``chunk_seconds`` < 1 or an unknown frame choice.
        MediaError: missing, unreadable, undecodable or too short media.
    """
    if chunk_seconds < 1:
        raise ValueError(f"chunk_seconds must be >= 1, got {chunk_seconds}")
    plan = DecodePlan.for_specs([e.spec for e in extractors], frame_choice)
    for decoded in iter_decoded(clip, plan, timeline or common_timeline(clip, plan), chunk_seconds):
        yield embed_decoded(decoded, extractors)


def embed_waveform(waveform: np.ndarray, sample_rate_hz: int, extractors: Sequence[Extractor]) -> SecondEmbeddings:
    """Per-second embeddings of an in-memory waveform ``(channels, samples)`` (the whole seconds it holds) for
    audio extractors, each at its own rate, channels and context."""
    n_seconds = seconds_in(waveform.shape[-1] / sample_rate_hz)
    if n_seconds < 1:
        raise ValueError(f"the waveform holds {waveform.shape[-1]} samples at {sample_rate_hz} Hz: less than one second")
    return SecondEmbeddings(0, {
        e.spec.name: embed_batched(e, audio_windows(waveform, sample_rate_hz, n_seconds, *audio_format(e.spec)))
        for e in extractors
    })


def embed_file(
    video: str | Path,
    extractors: Sequence[Extractor],
    audio: str | Path | None = None,
    chunk_seconds: int = 30,
    frame_choice: str = "middle",
) -> SecondEmbeddings:
    """Per-second embeddings of one media file, the chunks of :func:`iter_embeddings` joined.

    Args:
        video: A video file (or an audio file, for audio extractors only).
        extractors: Built extractors (:func:`extract.extractor.create_extractors`).
        audio: An audio file to use instead of the video's own soundtrack.
        chunk_seconds: Seconds decoded and embedded at a time (the memory bound; the result does not depend on it).
        frame_choice: Which frame stands for each second (``extract.store.FRAME_CHOICES``).

    Returns:
        ``embeddings`` ``{name: (T, D) float32}`` of the ``T`` whole seconds both modalities cover, with
        ``timestamps_s`` ``(T,)`` (the centre of each second) and ``coverage_s`` ``(T, 2)`` (its start and end).

    Raises:
        MediaError: missing, unreadable, undecodable or too short media.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from avscene import create_extractors, embed_file
        >>> from avscene.demo.synthetic import write_video, write_wav
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_video(folder / "clip.mp4", lambda i: np.full((24, 32, 3), 8 * i, np.uint8), 25, 10, 32, 24)
        >>> write_wav(folder / "clip.wav", np.zeros((2, 48_000 * 3), np.float32), 48_000)
        >>> found = embed_file(folder / "clip.mp4", create_extractors("debug_visual,debug_audio", "cpu"),
        ...                    audio=folder / "clip.wav")
        >>> {name: x.shape for name, x in found.embeddings.items()}  # 2.5 s of video: 2 whole seconds
        {'debug_visual': (2, 16), 'debug_audio': (2, 16)}
        >>> found.timestamps_s.tolist(), found.coverage_s.tolist()
        ([0.5, 1.5], [[0.0, 1.0], [1.0, 2.0]])
    """
    clip = Clip(str(video), "", "", Path(video), None if audio is None else Path(audio))
    chunks = list(iter_embeddings(clip, extractors, chunk_seconds, frame_choice))
    names = [e.spec.name for e in extractors]
    return SecondEmbeddings(0, {n: np.concatenate([c.embeddings[n] for c in chunks]) for n in names},
                            {n: np.concatenate([c.valid[n] for c in chunks]) for n in names if all(n in c.valid for c in chunks)})
