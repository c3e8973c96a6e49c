"""The GPU end-to-end benchmark (``bench/gpu.sh``, ``make bench-gpu``): TAU-like clips through the seed visual + audio
set with random weights in bf16, decoded by CPU workers (one per core) and by NVDEC, on one GPU.

It prints and writes (``bench/results-cuda-<gpu>.{md,json}``): clips/s of each decode path, the time split (decode,
host -> device, each model, write), GPU utilisation sampled during each run, the bf16-vs-fp32 embedding agreement of
each model, each model's own batched rate, the end-to-end rate against 90 % of the slowest model's rate, and the TAU
development set's time (12,291 clips, with and without the first paper's augmented visual pass) computed from the
measured rate. ``--dry-run`` checks the arguments and prints the plan without touching a GPU.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from avscene.entry import run_cli
from bench.common import timed_extraction
from bench.media import TauLikeMedia, tau_like_dataset

logger = logging.getLogger(__name__)

TAU_DEV_CLIPS = 12_291  # TAU Urban Audio-Visual Scenes 2021 development set (shared/tau/meta/meta.csv)
PAPER_VIEWS = "paper_aug:1"  # the first paper's code embeds every clip's frames a second time, augmented
TARGET_SHARE = 0.9  # end to end >= 90 % of the slowest model's own batched rate
RATE_SECONDS = 256  # clip-seconds per model in its own batched-rate measurement


def gpu_slug(name: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``h100``: the first word of letters then digits in a GPU's name."""
    words = re.findall(r"[a-z]+\d+[a-z]*", re.sub(r"([a-z]) (\d)", r"\1\2", name.lower()))  # "rtx 4090" -> rtx4090
    return words[0] if words else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class UtilisationSampler:
    """GPU utilisation (%) sampled every ``period_s`` through NVML while a run lasts."""

    def __init__(self, enabled: bool = True, period_s: float = 0.2) -> None:
        self.enabled, self.period_s, self.samples = enabled, period_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not self._stop.wait(self.period_s):
            self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def __enter__(self) -> "UtilisationSampler":
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    def summary(self) -> dict[str, float | None]:
        """Mean and median utilisation in percent (None without samples) and the number of samples."""
        if not self.samples:
            return {"mean_pct": None, "median_pct": None, "samples": 0}
        return {"mean_pct": round(float(np.mean(self.samples)), 1),
                "median_pct": round(float(np.median(self.samples)), 1), "samples": len(self.samples)}


def extraction_run(manifest: Path, models: tuple[str, ...], decode_device: str, views: str = "",
                   device: str = "cuda") -> dict[str, Any]:
    """One extraction into a fresh store: clips/s, the time split, GPU utilisation (on ``cuda``)."""
    from extract.views import parse_views

    with UtilisationSampler(enabled=device == "cuda") as sampler:
        summary, wall_s, cfg = timed_extraction(f"{decode_device} decode run", data=manifest, extractors=models,
                                                device=device, random_init=True, precision="bf16",
                                                decode_device=decode_device, views=parse_views(views, 0))
    n_clips = max(summary.done.values())
    return {"decode_device": decode_device, "views": views, "clips": n_clips, "wall_s": round(wall_s, 2),
            "clips_per_s": round(n_clips / wall_s, 2), "decode_workers": cfg.workers,
            "seconds": {k: round(v, 2) for k, v in sorted(summary.seconds.items())},
            "model_seconds": {k: round(v, 2) for k, v in sorted(summary.model_seconds.items())},
            "gpu_utilisation": sampler.summary()}


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def host_to_device_s(manifest: Path, models: tuple[str, ...], device: str = "cuda") -> float:
    """Seconds to copy one clip's decoded inputs (every model's frames and windows) from pinned host memory to the GPU,
    measured on the first clip: the CPU path's host -> device share per clip."""
    import torch

    from extract.decode_plan import DecodePlan, decode_whole_clip
    from extract.manifest import read_manifest
    from extract.registry import get_spec

    decoded = decode_whole_clip(read_manifest(manifest).clips[0], DecodePlan.for_specs([get_spec(m) for m in models]))
    arrays = [torch.from_numpy(np.ascontiguousarray(a)) for a in (*decoded.frames.values(), *decoded.audio.values())]
    arrays = [a.pin_memory() for a in arrays] if device == "cuda" else arrays
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(10):
        for a in arrays:
            a.to(device, non_blocking=True)
    _synchronize(device)
    return (time.perf_counter() - started) / 10


def model_checks(manifest: Path, models: tuple[str, ...], device: str = "cuda",
                 rate_seconds: int = RATE_SECONDS) -> dict[str, dict[str, Any]]:
    """Each model's own batched rate (clip-seconds/s, bf16, inputs already decoded, over ``rate_seconds`` seconds) and
    its bf16-vs-fp32 agreement (cosine per second on the first clip)."""
    import torch

    from extract.decode_plan import DecodePlan, decode_whole_clip
    from extract.embed import embed_batched
    from extract.extractor import InferenceOptions, create_extractor
    from extract.manifest import read_manifest

    clip = read_manifest(manifest).clips[0]
    out = {}
    for name in models:
        bf16 = create_extractor(name, random_init=True, device=device, options=InferenceOptions(precision="bf16"))
        fp32 = create_extractor(name, random_init=True, device=device, options=InferenceOptions(precision="fp32"))
        fp32.module.load_state_dict(bf16.module.state_dict())  # the same random weights in both precisions
        x = decode_whole_clip(clip, DecodePlan.for_specs([bf16.spec])).input_for(bf16.spec)
        a, b = embed_batched(bf16, x), embed_batched(fp32, x)
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        batch = np.concatenate([x] * int(np.ceil(rate_seconds / len(x))))[:rate_seconds]
        embed_batched(bf16, batch)  # warm-up
        _synchronize(device)
        started = time.perf_counter()
        embed_batched(bf16, batch)
        _synchronize(device)
        out[name] = {"clip_seconds_per_s": round(rate_seconds / (time.perf_counter() - started), 1),
                     "bf16_vs_fp32_cosine_min": round(float(cosine.min()), 5),
                     "bf16_vs_fp32_cosine_mean": round(float(cosine.mean()), 5), "batch_size": bf16.options.batch_size}
        del bf16, fp32
        if device == "cuda":
            torch.cuda.empty_cache()
    return out


def measure(manifest: Path, models: tuple[str, ...], media: TauLikeMedia, device: str = "cuda",
            decode_devices: tuple[str, ...] = ("cpu", "cuda"), rate_seconds: int = RATE_SECONDS) -> dict[str, Any]:
    """Every figure of the page but the machine's: one run per decode device, one CPU-decode run with the paper's
    views, the model checks, the target and the TAU development set's time."""
    runs, failed = [], {}
    for decode_device in decode_devices:
        try:
            runs.append(extraction_run(manifest, models, decode_device, device=device))
        except RuntimeError as err:  # clips NVDEC cannot decode: reported, the CPU figures stand
            if decode_device == "cpu":
                raise
            failed[decode_device] = str(err)
    views_run = extraction_run(manifest, models, "cpu", PAPER_VIEWS, device=device)
    checks = model_checks(manifest, models, device, rate_seconds)
    slowest = min(checks, key=lambda n: checks[n]["clip_seconds_per_s"])
    slowest_clips_per_s = checks[slowest]["clip_seconds_per_s"] / media.seconds
    best = max(r["clips_per_s"] for r in runs)
    return {"finished_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "media": media.describe(),
            "models": models, "runs": runs, "views_run": views_run, "decode_runs_failed": failed,
            "host_to_device_s_per_clip": host_to_device_s(manifest, models, device), "models_checked": checks,
            "target": {"slowest_model": slowest, "slowest_clips_per_s": round(slowest_clips_per_s, 2),
                       "best_clips_per_s": best, "share": best / slowest_clips_per_s,
                       "met": best >= TARGET_SHARE * slowest_clips_per_s},
            "tau_dev": {"clips": TAU_DEV_CLIPS, "hours": round(TAU_DEV_CLIPS / best / 3600, 2),
                        "hours_with_paper_views": round(TAU_DEV_CLIPS / views_run["clips_per_s"] / 3600, 2)}}


def markdown(results: dict[str, Any]) -> str:
    """The results page: runs, time split, models, target, TAU development set."""
    m = results["machine"]
    lines = [f"Machine: {m['gpu']}, {m['cpu']}, {m['cores']} cores; torch {m['torch']}, torchcodec {m['torchcodec']}, "
             f"PyAV {m['pyav']}; `bench/gpu.sh` of {results['finished_utc']}, {results['clips']} TAU-like clips "
             f"({results['media']}), models {', '.join(results['models'])} (random weights, bf16).", "",
             "| decode | clips/s | wall s | decode s (summed over workers) | decode wait s | host->device s/clip | "
             "model s | write s | GPU utilisation mean / median |", "|---|---|---|---|---|---|---|---|---|"]
    for run in (*results["runs"], results["views_run"]):
        s = run["seconds"]
        h2d = results["host_to_device_s_per_clip"] if run["decode_device"] == "cpu" else 0.0
        label = f"{run['decode_device']} ({run['decode_workers']} workers{', views ' + run['views'] if run['views'] else ''})"
        lines.append(f"| {label} | {run['clips_per_s']} | {run['wall_s']} | "
                     f"{s.get('decode', 0)} | {s.get('decode_wait', 0)} | {h2d:.4f} | {s.get('model', 0)} | "
                     f"{s.get('write', 0)} | {run['gpu_utilisation']['mean_pct']} / {run['gpu_utilisation']['median_pct']} % |")
    runs = results["runs"]
    lines += ["", "| model | own batched rate (clip-seconds/s) | " + " | ".join(f"model s, {r['decode_device']} decode"
                                                                          for r in runs) + " | bf16 vs fp32 cosine min / mean |",
              "|---|---|" + "---|" * len(runs) + "---|"]
    for name, check in results["models_checked"].items():
        seconds = " | ".join(str(r["model_seconds"].get(name, "-")) for r in runs)
        lines.append(f"| `{name}` | {check['clip_seconds_per_s']} | {seconds} | "
                     f"{check['bf16_vs_fp32_cosine_min']} / {check['bf16_vs_fp32_cosine_mean']} |")
    if results.get("nvdec_not_run"):
        lines += ["", f"NVDEC decode run: **not run** ({results['nvdec_not_run']})."]
    for decode_device, error in results["decode_runs_failed"].items():
        lines += ["", f"{decode_device} decode run: **failed** ({error})."]
    t = results["target"]
    lines += ["", f"Target: end to end >= {TARGET_SHARE:.0%} of the slowest model's own rate "
              f"({t['slowest_model']}: {t['slowest_clips_per_s']} clips/s): best end to end {t['best_clips_per_s']} clips/s "
              f"= {t['share']:.0%}, {'met' if t['met'] else '**not met**'}.", "",
              f"TAU development set ({TAU_DEV_CLIPS} clips) at the best measured rate: {results['tau_dev']['hours']} h; "
              f"with the first paper's augmented visual pass ({PAPER_VIEWS}, CPU decode): "
              f"{results['tau_dev']['hours_with_paper_views']} h (computed from the measured rates, not run on the "
              "whole set)."]
    return "\n".join(lines) + "\n"


def _torchcodec_version() -> str:
    import torchcodec

    return torchcodec.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--clips", type=int, default=64, help="TAU-like clips to generate and extract")
    parser.add_argument("--models", default="seed", help="extractors (names or aliases); default the seed set")
    parser.add_argument("--out", default="bench", help="folder for results-cuda-<gpu>.{md,json}")
    parser.add_argument("--work-dir", default="cache/bench", help="generated media kept between runs")
    parser.add_argument("--dry-run", action="store_true", help="check the arguments, print the plan, touch no GPU")
    parser.set_defaults(func=run_gpu_bench)
    return parser


def run_gpu_bench(args: argparse.Namespace) -> int:
    from extract.registry import resolve_names

    if args.clips < 1:
        raise ValueError(f"--clips must be >= 1, got {args.clips}")
    models = tuple(resolve_names(args.models))
    media = TauLikeMedia()
    plan = [f"generate {args.clips} TAU-like clips ({media.describe()}) in {args.work_dir}/tau_like/gpu",
            f"extract {', '.join(models)} (random weights, bf16): CPU decode workers, then NVDEC, then CPU decode with "
            f"views {PAPER_VIEWS}",
            "per model: own batched rate and bf16-vs-fp32 cosine; host->device copy of one clip's inputs",
            f"write {args.out}/results-cuda-<gpu>.md and .json"]
    if args.dry_run:
        print("dry run, nothing measured:\n" + "\n".join(f"  {i + 1}. {step}" for i, step in enumerate(plan)))
        return 0
    import torch

    from bench.common import machine_description
    from extract.gpu_decode import cuda_decoder_missing

    if not torch.cuda.is_available():
        raise RuntimeError("bench/gpu.sh needs a CUDA device; torch sees none")
    nvdec_missing = cuda_decoder_missing()  # e.g. torchcodec without FFmpeg's shared libraries: the CPU runs still go
    if nvdec_missing:
        logger.warning("NVDEC run not possible: %s", nvdec_missing)
    started = time.perf_counter()
    manifest = tau_like_dataset(Path(args.work_dir) / "tau_like" / "gpu", args.clips, media)
    logger.info("media ready in %.0f s", time.perf_counter() - started)
    machine = {**machine_description("cuda"), "torchcodec": "not loadable" if nvdec_missing else _torchcodec_version()}
    decode_devices = ("cpu",) if nvdec_missing else ("cpu", "cuda")
    results = {"machine": machine, **measure(manifest, models, media, decode_devices=decode_devices),
               "nvdec_not_run": nvdec_missing, "clips": args.clips,
               "seconds_total": round(time.perf_counter() - started, 1)}
    out = Path(args.out)
    stem = f"results-cuda-{gpu_slug(machine['gpu'])}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    page = markdown(results)
    (out / f"{stem}.md").write_text(page)
    print(page)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
