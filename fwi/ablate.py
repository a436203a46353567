"""``python -m fwi.ablate``: the ablation CLI (the code lives in the :mod:`fwi.ablation` package).

    python -m fwi.ablate configs/ablation/salt70_attention.yaml                 # -> experiments/salt70_attention/
    python -m fwi.ablate report experiments/salt70_attention                     # rebuild results from the runs
"""

import sys

from fwi.ablation.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
