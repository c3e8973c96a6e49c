"""Row 7: ``avscene serve`` under load: concurrent uploads of a 2-s clip to a real uvicorn on 127.0.0.1.

The server runs one worker process with the heads of a small ``vadd eval`` run (debug extractors, built once in the
work folder), so the figures are the service's own cost (HTTP, multipart, probing through the decode path, the job
store on disk, the pool) plus a cheap check, not a model's. The papers have no service: no baseline, no target.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from bench.common import make_row

logger = logging.getLogger(__name__)

N_UPLOADS = 50
POLL_S = 0.05


def _heads(work_dir: Path) -> Path:
    from avscene.demo.run import debug_heads_run

    run = work_dir / "run"
    if not (run / "heads.json").is_file():
        shutil.rmtree(work_dir, ignore_errors=True)
        run = debug_heads_run(work_dir)
    return run


def _clip(path: Path) -> Path:
    """2 s of 64x48 coloured noise at 10 fps with a noise soundtrack (16 kHz mono), H.264 + AAC."""
    from avscene.demo.synthetic import write_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (20, 48, 64, 3), dtype=np.uint8)
    write_video(path, lambda i: frames[i], 20, 10, 64, 48, gop=10,
                audio=(rng.standard_normal((1, 32_000)) * 0.1).astype(np.float32), audio_rate_hz=16_000)
    return path


async def _load(url: str, body: bytes, n: int) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        async def one(i: int) -> tuple[float, float, str]:
            started = time.perf_counter()
            reply = await client.post("/v1/checks", files={"file": (f"clip-{i}.mp4", body, "video/mp4")})
            reply.raise_for_status()
            accepted = time.perf_counter()
            job_id = reply.json()["id"]
            while (job := (await client.get(f"/v1/checks/{job_id}")).json())["status"] not in ("done", "failed"):
                await asyncio.sleep(POLL_S)
            return accepted - started, time.perf_counter() - started, job["status"]

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        return {"results": results, "wall_s": time.perf_counter() - started}


def run(quick: bool = False, work_dir: Path = Path("cache/bench")) -> list[dict]:
    """Start the server, send the uploads at once, wait for every job."""
    from avscene.paths import REPO_ROOT
    from avscene.service.launch import start_server

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    folder = Path(work_dir) / "serve"
    heads = _heads(folder / "heads")
    clip = _clip(folder / "clip.mp4")
    n = N_UPLOADS // 5 if quick else N_UPLOADS
    shutil.rmtree(folder / "state", ignore_errors=True)
    server = start_server(["--heads", str(heads), "--state", str(folder / "state"), "--workers", "1"],
                          folder / "serve.log", cwd=REPO_ROOT)
    try:
        server.wait_ready()
        load = asyncio.run(_load(server.url, clip.read_bytes(), n))
    finally:
        server.stop()
    post_s = np.array([r[0] for r in load["results"]])
    done_s = np.array([r[1] for r in load["results"]])
    statuses = [r[2] for r in load["results"]]
    accepted_per_s = n / post_s.max()
    jobs_per_s = n / load["wall_s"]
    details = {"uploads": n, "workers": 1, "clip": "2 s, 64x48, H.264 + AAC", "heads": "debug extractors",
               "post_latency_ms": {"p50": round(1000 * float(np.median(post_s)), 1),
                                   "p95": round(1000 * float(np.percentile(post_s, 95)), 1)},
               "turnaround_s": {"p50": round(float(np.median(done_s)), 2), "p95": round(float(np.percentile(done_s, 95)), 2)},
               "uploads_accepted_per_s": round(accepted_per_s, 1), "jobs_per_s": round(jobs_per_s, 2),
               "wall_s": round(load["wall_s"], 2), "done": statuses.count("done"), "failed": statuses.count("failed")}
    return [make_row(
        f"serve: {n} concurrent uploads of a 2-s clip to avscene serve (1 worker, debug heads), 127.0.0.1",
        f"{accepted_per_s:.1f} uploads/s accepted (POST p50 {details['post_latency_ms']['p50']:.0f} ms, p95 "
        f"{details['post_latency_ms']['p95']:.0f} ms); {jobs_per_s:.2f} jobs/s checked (turnaround p50 "
        f"{details['turnaround_s']['p50']:.1f} s, p95 {details['turnaround_s']['p95']:.1f} s); "
        f"{details['done']}/{n} done",
        "-", None, "no target (the papers have no service)", None, details)]
