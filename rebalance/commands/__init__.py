"""Command lines: the flags the scripts share, the steered-inference and grading front ends the
top-level scripts call, and `python -m rebalance.commands.reproduce` (the paper's table for a model)."""
