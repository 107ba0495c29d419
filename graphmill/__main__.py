"""``python -m graphmill``: runs ``graphmill.cli``'s ``__main__``, the same as the ``graphmill`` console script."""

import runpy

runpy.run_module("graphmill.cli", run_name="__main__", alter_sys=True)
