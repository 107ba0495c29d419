"""``python -m graphmill.cli``: the same as the ``graphmill`` console script."""

import sys

from graphmill.cli import main

sys.exit(main())
