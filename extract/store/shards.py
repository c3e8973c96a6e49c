"""Shard coordination: which blocks of a store each of ``n`` processes owns, and how the other shards wait for
shard 0 to create the store and its extractor groups."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

from extract.store.reader import EmbeddingStore
from extract.store.format import (
    DEFAULT_VIEW,
    PENDING,
    FingerprintMismatchError,
    StoreError,
    group_key,
    open_group,
    retry_torn,
    store_ready,
)

WAIT_POLL_S = 0.5


def shard_rows(store: EmbeddingStore, shard_index: int, shard_count: int) -> np.ndarray:
    """Row indexes of the blocks owned by shard ``shard_index`` of ``shard_count``."""
    blocks = range(shard_index, store.n_blocks, shard_count)
    return np.concatenate([np.arange(len(store.clips))[store.block_slice(b)] for b in blocks] or [np.zeros(0, int)])


def count_status(store: EmbeddingStore, name: str, shard_index: int = 0, shard_count: int = 1,
                 view: str = DEFAULT_VIEW) -> Counter:
    """Clips of this shard by status: ``{DONE: n, FAILED: m, PENDING: k}``."""
    return Counter(store.status(name, view)[shard_rows(store, shard_index, shard_count)].tolist())


def pending_blocks(store: EmbeddingStore, name: str, shard_index: int = 0, shard_count: int = 1,
                   view: str = DEFAULT_VIEW) -> list[int]:
    """Blocks of this shard (``block % shard_count == shard_index``) with a clip still pending."""
    status = store.status(name, view)
    return [b for b in range(shard_index, store.n_blocks, shard_count)
            if (status[store.block_slice(b)] == PENDING).any()]


def wait_until_ready(location: str, timeout_s: float) -> None:
    """Return once the store that another process (shard 0) is creating has a complete clip table."""
    deadline = time.monotonic() + timeout_s
    while not store_ready(location):
        if time.monotonic() > deadline:
            raise StoreError(f"{location}: timed out after {timeout_s:.0f} s waiting for shard 0 to create it")
        time.sleep(WAIT_POLL_S)


def wait_for_group(location: str, name: str, fingerprint: str, timeout_s: float, view: str = DEFAULT_VIEW) -> None:
    """Return once shard 0 has created ``name``'s arrays (in ``view``) with ``fingerprint``."""
    deadline = time.monotonic() + timeout_s
    key = group_key(name, view)
    while True:
        root = open_group(location, mode="r")
        if retry_torn(lambda: key in root, location):
            attrs = dict(retry_torn(lambda: root[key], location).attrs)
            if attrs.get("arrays_ready") and attrs.get("fingerprint") == fingerprint:
                return
            if attrs.get("arrays_ready"):
                raise FingerprintMismatchError(
                    f"{location}: {name!r} exists with fingerprint {attrs.get('fingerprint')}, "
                    f"this shard computes {fingerprint}"
                )
        if time.monotonic() > deadline:
            raise StoreError(f"{location}: timed out waiting for shard 0 to create {name!r}")
        time.sleep(WAIT_POLL_S)
