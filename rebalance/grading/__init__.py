"""Grading: answer extraction per family, equivalence (plain values, math-verify in workers), the
authors' rules for `--grader paper`, and the reduction to accuracy and tokens. Benchmark names
appear only in `families.py`."""
