"""The embedding store (Zarr v3), after lhotse's ``FeaturesReader``/``FeaturesWriter``.

- :mod:`extract.store.format`: the on-disk layout, its constants and the clip table type;
- :mod:`extract.store.reader`: :class:`EmbeddingStore`, the reader (clips, taxonomy, records, usable clips, splits,
  errors, export): all that stage 2 (``classify``, ``vadd``) imports, through this package;
- :mod:`extract.store.writer`: :class:`~extract.store.writer.StoreWriter` (create, prepare, write blocks, finalize,
  retry), used by the runner only;
- :mod:`extract.store.shards`: which blocks each shard owns, and how shards wait for shard 0.
"""
from extract.store.format import (
    DEFAULT_VIEW,
    DONE,
    FAILED,
    FLOAT16_MAX,
    FRAME_CHOICES,
    FRAME_OFFSET_SECONDS,
    HOP_SECONDS,
    PENDING,
    SCHEMA_VERSION,
    ClipTable,
    FingerprintMismatchError,
    StoreError,
    group_key,
    store_exists,
    store_ready,
)
from extract.store.reader import EmbeddingStore, ExcludedClip, GroupRecord, SplitData, UsableClips, local_stores, report_excluded

__all__ = [
    "DEFAULT_VIEW", "DONE", "FAILED", "FLOAT16_MAX", "FRAME_CHOICES", "FRAME_OFFSET_SECONDS", "HOP_SECONDS", "PENDING",
    "SCHEMA_VERSION", "ClipTable", "FingerprintMismatchError", "StoreError", "group_key", "store_exists", "store_ready",
    "EmbeddingStore", "ExcludedClip", "GroupRecord", "SplitData", "UsableClips", "local_stores", "report_excluded",
]
