"""Files: every name the suite writes (`names.py`), the run cards that say how a run's records
were made (`cards.py`), atomic writes, and the append-only shards with their locks, resume and merge."""
