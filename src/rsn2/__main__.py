"""``python -m rsn2``: the same as the ``rsn2`` command."""

import sys

from rsn2.cli.entry import main

sys.exit(main())
