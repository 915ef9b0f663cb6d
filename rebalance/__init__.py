"""ReBalance: training-free steering of reasoning models towards balanced thinking.

One module per concern; the top-level scripts only parse flags and call in here.
"""

__version__ = "0.1.0"
