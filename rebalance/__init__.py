"""ReBalance: training-free steering of reasoning models towards balanced thinking.

The package follows the pipeline. `stages/` holds one module per stage (collect, select_layer,
extract, steer, merge, grade), each with its flags, its job and its run; the top-level scripts are
thin shims over them. `pipeline.py` runs the stages in order, skipping what is complete, for
`make reproduce` (`reproduce.py`), the demo and the organism study. The stages are built from
`decoding/` (the in-flight engine, steps, steering), `analysis/` (layer scores, labels, vectors),
`grading/` and `reports/`, over `files/` (names, shards, run cards), `examples.py`, `models.py`,
`control.py` (the control function) and `calibration.py` (where its constants come from).
`organism/` is the testbed, built on all of them; nothing below imports it. docs/ has the map.
"""

from .version import __version__

__all__ = ["__version__"]
