"""``python -m graphmill.cli``: the same as the ``graphmill`` console script."""

import sys

try:
    from graphmill.cli import main
except KeyboardInterrupt:  # Ctrl-C while graphmill imports (a second): one line, as main says it, not a traceback
    print("graphmill: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
