"""``python -m graphmill``: the same as the ``graphmill`` console script (and ``python -m graphmill.cli``)."""

import sys

from graphmill.cli import main

sys.exit(main())
