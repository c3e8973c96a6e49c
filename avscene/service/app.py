"""The HTTP API (FastAPI): submit a check, read its status and JSON, its report page; health; OpenAPI at
``/openapi.json`` (and ``/docs``)."""

import hmac
import logging
import os
import queue
import shutil
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from avscene.service.jobs import DONE, JobStore
from avscene.service.media import RequestRefused, probe_media, resolve_media_path
from avscene.service.workers import WorkerPool

logger = logging.getLogger(__name__)

TOKEN_VARIABLE = "AVSCENE_API_TOKEN"
UPLOAD_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class ServiceConfig:
    """How one server runs: the heads (a ``vadd eval`` run folder), where jobs are kept, what requests may name."""

    heads_dir: Path
    state_dir: Path
    media_roots: tuple[Path, ...] = ()
    workers: int = 1
    device: str = "cpu"
    max_upload_bytes: int = 200 * 1024 * 1024
    job_timeout_s: float = 600.0
    queue_limit: int = 1000
    token: str | None = field(default=None, repr=False)  # None: no token asked for


def heads_summary(heads_dir: Path) -> tuple[dict, list[str]]:
    """The heads' provenance (as ``vadd check`` prints it) and every extractor they read."""
    from vadd.check import heads_provenance, read_run_meta

    provenance = heads_provenance(heads_dir, read_run_meta(heads_dir))
    return provenance, [n for m in ("visual", "audio") for n in provenance["extractors"][m]]


def create_app(config: ServiceConfig):
    """The FastAPI application; its lifespan starts the worker pool and recovers the jobs of an earlier run."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse

    provenance, extractors = heads_summary(config.heads_dir)
    store = JobStore(config.state_dir)
    roots = [Path(r).absolute() for r in config.media_roots]
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        store.recover()
        state["pool"] = WorkerPool(store, config.heads_dir, config.workers, config.device, config.job_timeout_s,
                                   config.queue_limit)
        yield
        state["pool"].close()

    app = FastAPI(title="avscene", version="0.1.0", lifespan=lifespan,
                  description="Does a video's picture match its sound? `vadd check` as a service.")

    @app.exception_handler(RequestRefused)
    async def refused(request: Request, err: RequestRefused):
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    def authorise(request: Request) -> None:
        if config.token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {config.token}".encode()):
            raise RequestRefused(401, f"missing or wrong API token: send 'Authorization: Bearer <token>' "
                                      f"(the server's {TOKEN_VARIABLE})")

    def job_view(job_id: str) -> dict:
        try:
            job = store.get(job_id)
        except KeyError:
            raise RequestRefused(404, f"no job {job_id!r}") from None
        job = {k: v for k, v in job.items() if k != "media"}  # the server's own path
        job["result"] = store.result(job_id) if job["status"] == DONE else None
        job["report_url"] = f"/v1/checks/{job_id}/report" if job["status"] == DONE else None
        return job

    async def receive_upload(upload) -> Path:
        """Copy the upload into ``incoming`` in blocks, refusing it past the size cap or empty."""
        target = store.incoming / uuid.uuid4().hex
        size = 0
        with open(target, "wb") as out:
            while block := await upload.read(UPLOAD_BLOCK_BYTES):
                size += len(block)
                if size > config.max_upload_bytes:
                    out.close()
                    target.unlink()
                    raise RequestRefused(413, f"{upload.filename}: larger than the upload cap of "
                                              f"{config.max_upload_bytes} bytes")
                out.write(block)
        if size == 0:
            target.unlink()
            raise RequestRefused(400, f"{upload.filename or 'file'}: empty upload (0 bytes)")
        return target

    @app.post("/v1/checks", status_code=202, summary="Submit a video: multipart field 'file', or form field 'path' "
              "under a media root. Returns the job.")
    async def submit(request: Request):
        authorise(request)
        length = request.headers.get("content-length")
        if length is None:
            raise RequestRefused(411, "a Content-Length header is needed (the upload cap is checked before reading)")
        if not length.isdigit():
            raise RequestRefused(400, f"Content-Length {length!r} is not a byte count")
        if int(length) > config.max_upload_bytes + 64 * 1024:
            raise RequestRefused(413, f"request of {length} bytes is larger than the upload cap of "
                                      f"{config.max_upload_bytes} bytes")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception as err:  # starlette's multipart parser: malformed bodies
            raise RequestRefused(400, f"not a multipart form: {err}") from None
        upload, path = form.get("file"), form.get("path")
        if (upload is None) == (path is None) or isinstance(upload, str) or not isinstance(path, (str, type(None))):
            raise RequestRefused(400, "give exactly one of: a file in the multipart field 'file', or a form field "
                                      "'path' under a media root")
        if upload is not None:
            filename = Path(upload.filename or "upload").name
            received = await receive_upload(upload)
            try:
                await run_in_threadpool(probe_media, received, extractors, filename)
            except RequestRefused:
                received.unlink()
                raise
            job = store.create(received, filename, "upload")
            media = store.folder(job["id"]) / "upload"
            shutil.move(received, media)
            store.update(job["id"], media=str(media))
        else:
            media = resolve_media_path(path, roots)
            await run_in_threadpool(probe_media, media, extractors, path)
            filename = path
            job = store.create(media, path, "path")
        try:
            state["pool"].submit(job["id"], str(media), filename)
        except queue.Full:
            store.update(job["id"], status="failed", error="the queue is full")
            raise RequestRefused(503, "the job queue is full: try again later") from None
        return job_view(job["id"])

    @app.get("/v1/checks/{job_id}", summary="A job's status; its check JSON ('result') once done")
    async def status(job_id: str, request: Request):
        authorise(request)
        return job_view(job_id)

    @app.get("/v1/checks/{job_id}/report", summary="The job's report page (self-contained HTML)")
    async def report(job_id: str, request: Request):
        authorise(request)
        job = job_view(job_id)
        if job["status"] != DONE:
            raise RequestRefused(409, f"job {job_id} is {job['status']}: no report" +
                                 (f" ({job['error']})" if job["error"] else ""))
        return FileResponse(store.report_path(job_id), media_type="text/html")

    @app.get("/v1/health", summary="Liveness, the worker pool and the heads answering")
    async def health():
        pool = state["pool"].status()
        return {"status": "error" if pool["error"] else "ok", **pool, "heads": provenance,
                "media_roots": [str(r) for r in roots], "max_upload_bytes": config.max_upload_bytes,
                "job_timeout_s": config.job_timeout_s, "token_required": config.token is not None}

    return app


def token_from_environment() -> str | None:
    """``$AVSCENE_API_TOKEN``, or None when unset or empty."""
    return os.environ.get(TOKEN_VARIABLE) or None
