"""`python -m pmilab ...` (used under `torchrun -m pmilab pretrain ...`)."""

import sys

from pmilab.cli import main

sys.exit(main())
