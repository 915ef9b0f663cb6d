"""The suite's version and the checkout it runs from: run cards record both, and the pipeline runs
the top-level scripts that lie there."""

import os

__version__ = "0.1.0"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
