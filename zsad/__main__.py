"""``python -m zsad``: the ``zsad`` command line (``zsad.flows.cli``)."""

import sys

from zsad.flows.cli import main

sys.exit(main())
