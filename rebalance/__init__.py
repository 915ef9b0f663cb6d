"""ReBalance: training-free steering of reasoning models towards balanced thinking.

The top-level scripts only parse flags and call in here. The pipeline modules sit at this level
(`control`, `steering`, `runs`, `decode`, `models`, ...); the subpackages are the parts they are
built from: `decoding/`, `analysis/`, `grading/`, `organism/`, `reports/`, `benchmarks/`,
`files/`, `commands/`. README.md's "Layout" section is the map.
"""

__version__ = "0.1.0"
