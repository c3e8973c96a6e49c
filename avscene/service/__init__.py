"""``avscene serve``: ``vadd check`` over HTTP (FastAPI + uvicorn), with jobs persisted on disk and a bounded pool of
worker processes that keep the heads and extractors loaded."""
