"""Benchmarks (``make bench``): avscene vs the papers' way, measured side by side in one run.

Every topic module ``bench/<topic>.py`` exposes ``run(quick: bool = False, **options) -> list[dict]``; each
dict is one table row with the keys of :data:`bench.common.ROW_KEYS`. Speed targets live here, never in tests.
"""
