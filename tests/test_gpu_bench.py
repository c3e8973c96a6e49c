"""bench/gpu.sh (make bench-gpu) without a GPU: its syntax, its dry run (every step printed, nothing run) and its
argument checks; the GPU name it files results under."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.gpu import gpu_slug

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_gpu_script_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_gpu_script_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    done = _run("--dry-run", "--clips", "8", "--wheels", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "dry run, nothing measured" in done.stdout
    assert "generate 8 TAU-like clips" in done.stdout
    assert "vit_h14.swag_e2e_in1k_logits" in done.stdout and "panns_cnn10.audioset" in done.stdout
    assert "CPU decode workers, then NVDEC" in done.stdout


def test_gpu_script_dry_run_of_the_wheel_download_names_torchcodec(tmp_path):
    done = _run("--fetch-wheels", "--dry-run", "--wheels", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "pip download" in done.stdout and "torchcodec==0.17.0" in done.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("args, message", [(("--clips", "many"), "--clips must be a positive integer"),
                                           (("--gpus", "2"), "unknown argument --gpus")])
def test_gpu_script_refuses_bad_arguments(args, message):
    done = _run("--dry-run", *args)
    assert done.returncode == 2 and message in done.stderr


@pytest.mark.parametrize("name, slug", [("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"),
                                        ("NVIDIA A100-SXM4-40GB", "a100"), ("NVIDIA GeForce RTX 4090", "rtx4090")])
def test_results_file_is_named_after_the_gpu(name, slug):
    assert gpu_slug(name) == slug


def test_gpu_bench_measurements_and_page_on_the_cpu(tmp_path):
    """The measuring code of bench/gpu.py (runs, time split, model checks, target, TAU time, the page) with the debug
    extractors on the CPU and one small TAU-like clip; a GPU run does the same with NVDEC added."""
    from bench.common import machine_description
    from bench.gpu import TAU_DEV_CLIPS, markdown, measure
    from bench.media import TauLikeMedia, tau_like_dataset

    media = TauLikeMedia(width=128, height=72, seconds=2)
    manifest = tau_like_dataset(tmp_path / "data", 1, media)
    models = ("debug_visual", "debug_audio")
    results = measure(manifest, models, media, device="cpu", decode_devices=("cpu",), rate_seconds=4)
    run = results["runs"][0]
    assert run["clips"] == 1 and run["clips_per_s"] > 0 and run["gpu_utilisation"]["samples"] == 0
    assert set(run["model_seconds"]) == set(models)
    assert set(results["views_run"]["model_seconds"]) == {*models, "debug_visual/paper_aug_1"}
    assert set(results["models_checked"]) == set(models)
    for check in results["models_checked"].values():
        assert check["clip_seconds_per_s"] > 0 and check["bf16_vs_fp32_cosine_min"] > 0.999  # float32 both on CPU
    best = results["target"]["best_clips_per_s"]
    assert results["tau_dev"]["hours"] == round(TAU_DEV_CLIPS / best / 3600, 2)
    page = markdown({"machine": {**machine_description("cpu"), "gpu": "no GPU (CPU smoke test)", "torchcodec": "-"},
                     "clips": 1, **results})
    assert "| cpu (" in page and "views paper_aug:1" in page and "`debug_visual`" in page
    assert f"TAU development set ({TAU_DEV_CLIPS} clips)" in page and "**not run**" not in page
    assert results["decode_runs_failed"] == {}
    without_nvdec = markdown({"machine": {**machine_description("cpu"), "gpu": "-", "torchcodec": "not loadable"},
                              "clips": 1, **results, "nvdec_not_run": "torchcodec is not usable (no libavcodec)"})
    assert "NVDEC decode run: **not run** (torchcodec is not usable (no libavcodec))" in without_nvdec
