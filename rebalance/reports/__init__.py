"""What people look at: the report beside the paper's numbers (`python -m rebalance.reports.report`),
the paper's cells, and the PNG figures (control surface, length distributions)."""
