"""Orchestration above the stages: the synthetic dataset generator and ``make demo`` (extract -> classify -> vadd)."""
