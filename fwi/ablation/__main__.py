"""``python -m fwi.ablation``: the same CLI as ``python -m fwi.ablate``."""

import sys

from fwi.ablation.cli import main

if __name__ == "__main__":
    sys.exit(main())
