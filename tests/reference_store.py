"""A tiny store built from fixed numbers through the store's public write calls, the same on every version.

``tests/data/store-v1-79d4789.zarr`` is this store as commit 79d4789 (before the reader/writer split and
checksums) wrote it, by::

    git archive 79d4789 | tar -x -C /tmp/old && cd /tmp/old && python -c \\
      "import sys; sys.path.insert(0, '$REPO/tests'); from extract.store import BlockResult, EmbeddingStore; \\
       import reference_store as r; r.write_reference_store(EmbeddingStore.create, BlockResult, 'store-v1-79d4789.zarr')"

``tests/test_store_faults.py`` writes it again with today's writer and compares the two.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

N_CLIPS, SECONDS, DIM, CLIPS_PER_CHUNK = 5, 3, 4, 2
CLASSES = ("bus", "park")

def specs() -> dict[str, dict]:
    """The two groups' specs: the debug extractors' under other names, ``DIM``-dimensional."""
    from dataclasses import replace

    from extract.registry import get_spec

    return {f"toy_{m}": replace(get_spec(f"debug_{m}"), name=f"toy_{m}", embedding_dim=DIM).to_dict()
            for m in ("audio", "visual")}


def reference_embeddings(name: str) -> np.ndarray:
    """``(N_CLIPS, SECONDS, DIM)`` float32, distinct per extractor and exact in float16."""
    offset = 1.0 if name == "toy_visual" else 0.0
    return (np.arange(N_CLIPS * SECONDS * DIM, dtype=np.float32).reshape(N_CLIPS, SECONDS, DIM) / 8 + offset)


def write_reference_store(create: Callable[..., Any], block_result: type, location: str) -> Any:
    """Create the store with ``create`` (the version's ``create`` classmethod) and write both groups with
    ``block_result`` (the version's ``BlockResult``): every clip done except clip c4 of ``toy_audio``, failed at
    decode."""
    from extract.store import DONE, FAILED, ClipTable
    from extract.taxonomy import Taxonomy

    ids = np.array([f"c{i}" for i in range(N_CLIPS)])
    table = ClipTable(
        ids=ids, labels=np.array(["park", "bus"] * N_CLIPS)[:N_CLIPS],
        splits=np.array(["train", "test"] * N_CLIPS)[:N_CLIPS], n_seconds=np.full(N_CLIPS, SECONDS, np.int32),
        video_paths=np.array([f"video/{i}.mp4" for i in ids]), audio_paths=np.array([""] * N_CLIPS),
        probe_errors=np.array([""] * N_CLIPS),
    )
    store = create(location, table, taxonomy=Taxonomy(CLASSES), data_root="/data", clips_per_chunk=CLIPS_PER_CHUNK)
    for name, spec in specs().items():
        store.prepare_group(name, spec=spec, fingerprint=f"fp-{name}", weights="random-init")
        embeddings = reference_embeddings(name)
        for block in range(store.n_blocks):
            sl = store.block_slice(block)
            n = sl.stop - sl.start
            status = np.full(n, DONE, np.int8)
            stage, message = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
            emb, valid = embeddings[sl].copy(), np.ones((n, SECONDS), bool)
            if name == "toy_audio" and sl.stop == N_CLIPS:
                status[-1], stage[-1], message[-1] = FAILED, "decode", "c4.wav: not a readable media file"
                emb[-1], valid[-1] = 0, False
            store.write_block(name, block, block_result(emb, valid, status, stage.astype(str), message.astype(str),
                                                       np.full(n, 0.5, np.float32)))
        store.finalize_if_complete(name)
    return store
