"""The decode-and-embed path: a media file (or a manifest clip) -> per-second embeddings with timestamps.

One call for every caller that turns media into embeddings: the extraction runner (a whole clip per block,
batched across clips), ``vadd check`` (a long video chunk by chunk) and in-memory waveforms. Each second k has
one embedding per extractor; its timestamp is the centre of that second, ``k + 0.5`` s.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

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
