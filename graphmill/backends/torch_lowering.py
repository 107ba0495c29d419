"""Old home of the torch backend, kept only while ``graphmill/__init__.py`` imports ``to_torch`` from here.

The torch backend lives in ``graphmill.backends.torch``; delete this file once that import points there.
"""

from graphmill.backends.torch import export_weights, supported_ops, to_torch

__all__ = ["export_weights", "supported_ops", "to_torch"]
