"""Files: every name the suite writes (`names.py`), atomic writes, and the append-only shards
with their locks and merge."""
