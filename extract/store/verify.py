"""``python -m extract verify``: check every done block of a store against its checksum, its stored chunks and finite
values; ``--repair`` resets the damaged clips to pending so that a rerun re-embeds only them."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from extract.store.format import BLOCK_ARRAYS, CLIP_TEXT_COLUMNS, DONE, PENDING, StoreError, chunk_present
from extract.store.reader import EmbeddingStore
from extract.store.writer import StoreWriter

logger = logging.getLogger(__name__)

DONE_BLOCK_ARRAYS = ("embeddings", "valid")  # stored for every block with a clip done, in stores of any version


@dataclass(frozen=True)
class Damage:
    """One damaged place of a store: a block of an extractor view (every clip of it), some clips, or the clip table."""

    where: str  # "clips" or "<name>/<view>"
    block: int | None  # the block whose chunks are damaged; None when only ``clips`` are (non-finite values)
    clips: tuple[str, ...]
    problem: str

    def line(self) -> str:
        shown = ", ".join(self.clips[:10]) + (" ..." if len(self.clips) > 10 else "")
        block = f" block {self.block}" if self.block is not None else ""
        return f"{self.where}{block}: {self.problem}" + (f" ({len(self.clips)} clip(s): {shown})" if self.clips else "")


@dataclass(frozen=True)
class Verification:
    location: str
    checksums: str | None
    blocks_checked: int
    damage: tuple[Damage, ...]

    @property
    def damaged_clips(self) -> int:
        return sum(len(d.clips) for d in self.damage)


def verify_store(location: str) -> Verification:
    """Read every chunk of the clip table and of every block with a clip done (each extractor view), decoding it
    through its checksum; report missing chunks and NaN/inf embeddings too."""
    store = EmbeddingStore.open(location)
    damage: list[Damage] = []
    try:
        ids = store.clips.ids
    except StoreError as err:
        return Verification(location, store.checksums, 0, (Damage("clips", None, (), f"unreadable: {err}"),))
    for column in (*CLIP_TEXT_COLUMNS, "n_seconds"):
        arr = store.root["clips"][column]
        if len(ids) and not chunk_present(arr, 0) and column in ("id", "label", "split", "n_seconds"):
            damage.append(Damage("clips", None, (), f"the {column} column's chunk is missing"))
    checked = 0
    for name in store.extractor_names():
        for view in store.views(name):
            found, n_blocks = _verify_group(store, name, view)
            damage += found
            checked += n_blocks
    return Verification(location, store.checksums, checked, tuple(damage))


def _verify_group(store: EmbeddingStore, name: str, view: str) -> tuple[list[Damage], int]:
    where = f"{name}/{view}"
    arrays = {a: store.array(name, a, view) for a in BLOCK_ARRAYS}
    found, checked = [], 0
    for block in range(store.n_blocks):
        sl = store.block_slice(block)
        ids = tuple(str(i) for i in store.clips.ids[sl])
        try:
            status = np.asarray(arrays["status"][sl])
        except Exception as err:  # a checksum mismatch or undecodable chunk
            found.append(Damage(where, block, ids, f"status chunk unreadable ({type(err).__name__}: {err})"))
            continue
        if not (status != PENDING).any():
            continue
        checked += 1
        problem = _block_problem(arrays, block, sl, (status == DONE).any())
        if problem:
            found.append(Damage(where, block, ids, problem))
            continue
        embeddings = np.asarray(arrays["embeddings"][sl])
        bad = np.flatnonzero((status == DONE) & ~np.isfinite(embeddings).reshape(len(status), -1).all(axis=1))
        if len(bad):
            found.append(Damage(where, None, tuple(ids[i] for i in bad), f"NaN or inf embeddings in block {block}"))
    return found, checked


def _block_problem(arrays: dict, block: int, sl: slice, any_done: bool) -> str:
    """Why a written block's chunks cannot be trusted ('' when they can)."""
    for array_name, arr in arrays.items():
        if any_done and array_name in DONE_BLOCK_ARRAYS and not chunk_present(arr, block):
            return f"{array_name} chunk missing (it would read as zeros)"
        try:
            arr[sl]
        except Exception as err:
            return f"{array_name} chunk unreadable ({type(err).__name__}: {err})"
    return ""


def repair_store(verification: Verification) -> int:
    """Reset the damaged clips to pending (a damaged block: all its chunks dropped); returns how many clips.

    The clip table cannot be repaired here (it comes from the manifest): that damage raises."""
    table = [d for d in verification.damage if d.where == "clips"]
    if table:
        raise StoreError(f"{verification.location}: the clip table is damaged ({table[0].problem}); restore the store "
                         "from a copy or extract it again into a new store")
    store = StoreWriter.open(verification.location)
    row_of = {str(c): i for i, c in enumerate(store.clips.ids)}
    for d in verification.damage:
        name, view = d.where.split("/", 1)
        if d.block is not None:
            store.reset_blocks(name, [d.block], view)
        else:
            store.reset_rows(name, np.array(sorted(row_of[c] for c in d.clips)), view)
        logger.info("%s: reset %s", verification.location, d.line())
    return verification.damaged_clips
