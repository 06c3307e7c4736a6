"""Evaluation: cycles and energy of the SQ-DM accelerator against dense FP16 / INT4 / INT4-VSQ
accelerators (docs/evaluation.md). ``python -m evaluation.bench`` writes build/bench/report.json."""
