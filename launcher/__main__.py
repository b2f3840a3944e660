"""``python -m distgrad.launcher``: the same as the ``distgrad-run`` command."""

import sys

from .cli import main

sys.exit(main())
