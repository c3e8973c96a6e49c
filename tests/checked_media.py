"""Test-only videos with a soundtrack, muxed from a generated demo dataset's clips (picture of one, sound of another)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from avscene.demo.synthetic import write_video
from extract.audio_io import load_audio
from extract.video_io import read_frames


def muxed_clip(path: Path, video: Path, wav: Path, seconds: int = 2, fps: int = 5, size_px: int = 48) -> Path:
    """``seconds`` of ``video``'s picture (one frame a second, looped when the clip is shorter) with ``wav``'s sound
    (its first channel at a third of its rate, looped too: quick to encode and decode), as H.264 + AAC at
    ``size_px`` square."""
    frames = read_frames(video, [k + 0.5 for k in range(2)], [(size_px, size_px)])[(size_px, size_px)]
    waveform, rate_hz = load_audio(wav)
    waveform, rate_hz = waveform[:1, ::3], rate_hz // 3
    sound = np.tile(waveform, (1, -(-seconds * rate_hz // waveform.shape[1])))[:, : seconds * rate_hz]
    write_video(path, lambda i: frames[(i // fps) % len(frames)], seconds * fps, fps, size_px, size_px, gop=fps,
                audio=sound, audio_rate_hz=rate_hz)
    return path


def demo_pairs(data: Path) -> list[tuple[Path, Path]]:
    """``(video, wav)`` of every clip of a demo dataset, sorted by name."""
    return [(v, data / "audio" / f"{v.stem}.wav") for v in sorted((data / "video").glob("*.mp4"))]
