"""``python -m ragserve.cli``: the ``ragserve`` console script."""

import sys

from ragserve.cli.dispatch import main

sys.exit(main())
