"""``python -m distgrad.distributed.timeline DIR``: merge DIR's rank files into timeline.json and
draw overlap.png."""

import sys

from . import main

sys.exit(main())
