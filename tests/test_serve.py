"""`avscene serve` as a client meets it: a real uvicorn on 127.0.0.1, driven with httpx."""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the service tests need httpx (extra 'test')")
pytest.importorskip("fastapi", reason="avscene serve needs FastAPI and uvicorn (extra 'serve')")

from avscene.service.launch import Server, start_server  # noqa: E402
from tests.checked_media import demo_pairs, muxed_clip  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-1234"
CAP_MB = 1
N_UPLOADS = 50


@pytest.fixture(scope="module")
def clips(debug_heads, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    pairs = demo_pairs(debug_heads.parent / "data")
    return {"a": muxed_clip(folder / "a.mp4", *pairs[0]), "b": muxed_clip(folder / "b.mp4", pairs[20][0], pairs[40][1]),
            "long": muxed_clip(folder / "long.mp4", *pairs[10], seconds=30, fps=1)}


def _wait(client, job_id: str, until: set[str], timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/checks/{job_id}").json()
        if job["status"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s")


@pytest.fixture(scope="module")
def served(debug_heads, clips, tmp_path_factory) -> dict:
    """Token set, a media root holding a clip, a file outside it and a symlink leaving it, a 1 MB upload cap; the
    options and environment to restart it (the last test kills it)."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "media"
    root.mkdir()
    (root / "clip.mp4").write_bytes(clips["a"].read_bytes())
    (base / "secret.mp4").write_bytes(clips["b"].read_bytes())
    (root / "escape.mp4").symlink_to(base / "secret.mp4")
    options = ["--heads", str(debug_heads), "--state", str(base / "state"), "--media-root", str(root),
               "--workers", "1", "--max-upload-mb", str(CAP_MB)]
    env = {**os.environ, "AVSCENE_API_TOKEN": TOKEN}
    started = {"options": options, "env": env, "base": base,
               "server": start_server(options, base / "first.log", env=env, cwd=REPO)}
    try:
        assert started["server"].wait_ready()["workers_ready"] == 1
        yield started
    finally:
        started["server"].stop()
        if "restarted" in started:
            started["restarted"].stop()


@pytest.fixture
def server(served) -> Server:
    return served["server"]


def _client(server: Server, token: str | None = TOKEN):
    return httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {token}"} if token else {})


def test_50_concurrent_uploads_are_each_checked_once(server, clips):
    payloads = {i: clips["a" if i % 2 else "b"].read_bytes() for i in range(N_UPLOADS)}

    async def upload_all():
        async with httpx.AsyncClient(base_url=server.url, timeout=120,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            return await asyncio.gather(*(client.post("/v1/checks", files={"file": (f"clip-{i}.mp4", body, "video/mp4")})
                                          for i, body in payloads.items()))

    replies = asyncio.run(upload_all())
    assert [r.status_code for r in replies] == [202] * N_UPLOADS, [r.text for r in replies if r.status_code != 202]
    ids = {r.json()["id"]: i for i, r in enumerate(replies)}
    assert len(ids) == N_UPLOADS  # none duplicated
    with _client(server) as client:
        jobs = {i: _wait(client, job_id, {"done", "failed"}) for job_id, i in ids.items()}
        assert {j["status"] for j in jobs.values()} == {"done"}, [j["error"] for j in jobs.values() if j["error"]]
        assert all(j["filename"] == j["result"]["video"] == f"clip-{i}.mp4" for i, j in jobs.items())  # none mixed up
        by_clip = {}
        for i, j in jobs.items():  # the same clip gets the same answer whichever request carried it
            by_clip.setdefault(i % 2, set()).add(round(j["result"]["mismatch"]["detection_score"], 6))
        assert all(len(v) == 1 for v in by_clip.values())
        page = client.get(jobs[0]["report_url"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "clip-0.mp4" in page.text and "SYNTHETIC" in page.text
        assert server.health()["queued"] == 0


def test_a_path_under_the_media_root_is_checked(server):
    with _client(server) as client:
        reply = client.post("/v1/checks", data={"path": "clip.mp4"})
        assert reply.status_code == 202, reply.text
        job = _wait(client, reply.json()["id"], {"done", "failed"})
    assert job["status"] == "done" and job["result"]["n_seconds"] == 2 and "media" not in job


@pytest.mark.parametrize("name, request_kwargs, token, status, message", [
    ("text file", {"files": {"file": ("notes.mp4", b"just some notes\n" * 20)}}, TOKEN, 422,
     "notes.mp4: not a readable media file"),
    ("truncated mp4", "truncated", TOKEN, 422, "cut.mp4: "),
    ("0 bytes", {"files": {"file": ("empty.mp4", b"")}}, TOKEN, 400, "empty.mp4: empty upload (0 bytes)"),
    ("oversized", {"files": {"file": ("big.mp4", b"\0" * (CAP_MB * 1024 * 1024 + 100_000))}}, TOKEN, 413,
     "larger than the upload cap"),
    ("wrong token", {"files": {"file": ("a.mp4", b"x")}}, "not-the-token", 401, "missing or wrong API token"),
    ("no token", {"files": {"file": ("a.mp4", b"x")}}, None, 401, "missing or wrong API token"),
    ("../ path", {"data": {"path": "../secret.mp4"}}, TOKEN, 400, "'..' is not allowed"),
    ("symlink out of the root", {"data": {"path": "escape.mp4"}}, TOKEN, 403, "resolves outside the media roots"),
    ("absolute path outside", {"data": {"path": "/etc/hostname"}}, TOKEN, 403, "outside the media roots"),
    ("missing file", {"data": {"path": "nothing-here.mp4"}}, TOKEN, 404, "no such file under the media roots"),
    ("neither file nor path", {"data": {"other": "x"}}, TOKEN, 400, "give exactly one of"),
])
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(server, clips, name, request_kwargs, token, status,
                                                              message):
    if request_kwargs == "truncated":
        whole = clips["a"].read_bytes()
        request_kwargs = {"files": {"file": ("cut.mp4", whole[: len(whole) // 3])}}
    with _client(server, token) as client:
        reply = client.post("/v1/checks", **request_kwargs)
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert message in reply.json()["detail"]


def test_unknown_jobs_and_the_openapi_schema(server):
    with _client(server) as client:
        for path in ("/v1/checks/0123456789abcdef0123456789abcdef", "/v1/checks/..%2F..%2Fstate",
                     "/v1/checks/0123456789abcdef0123456789abcdef/report"):
            reply = client.get(path)
            assert reply.status_code == 404 and reply.json()["detail"], (path, reply.text)
        schema = client.get("/openapi.json").json()
    assert {"/v1/checks", "/v1/checks/{job_id}", "/v1/checks/{job_id}/report", "/v1/health"} <= set(schema["paths"])


def test_kill_9_during_a_job_then_restart(served, clips):
    """Finished jobs survive `kill -9`; the job in flight says it was interrupted; the restarted server's per-job
    timeout fails a job that runs too long and replaces its worker. (Last: it kills the module's server.)"""
    first = served["server"]
    with _client(first) as client:
        done = client.post("/v1/checks", files={"file": ("done.mp4", clips["a"].read_bytes())}).json()["id"]
        _wait(client, done, {"done"})
        long = client.post("/v1/checks", files={"file": ("long.mp4", clips["long"].read_bytes())}).json()["id"]
        _wait(client, long, {"running"})
    first.kill()  # SIGKILL to the server process: no shutdown of any kind
    second = served["restarted"] = start_server([*served["options"], "--job-timeout-s", "1"],
                                                served["base"] / "second.log", env=served["env"], cwd=REPO)
    second.wait_ready()
    with _client(second) as client:
        kept = client.get(f"/v1/checks/{done}").json()
        assert kept["status"] == "done" and kept["result"]["video"] == "done.mp4"
        assert client.get(f"/v1/checks/{done}/report").status_code == 200
        lost = client.get(f"/v1/checks/{long}").json()
        assert lost["status"] == "interrupted" and "server stopped while the job was running" in lost["error"]
        refused = client.get(f"/v1/checks/{long}/report")
        assert refused.status_code == 409 and "interrupted" in refused.json()["detail"]
        slow = client.post("/v1/checks", files={"file": ("long.mp4", clips["long"].read_bytes())}).json()["id"]
        timed_out = _wait(client, slow, {"done", "failed"})
        assert timed_out["status"] == "failed" and "timed out after 1 s" in timed_out["error"]
    health = second.wait_ready()  # the killed worker's replacement loads its models
    assert health["workers_ready"] == 1 and health["error"] is None
