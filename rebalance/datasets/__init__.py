"""The nine benchmarks and the seen set from their public sources, converted to the project's
JSONL format (`python -m rebalance.datasets.fetch data|vectors`)."""
