import sys

from fwi.invert.cli import main

sys.exit(main())
