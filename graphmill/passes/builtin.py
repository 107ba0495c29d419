"""Imports every built-in pass module so that their ``@register_pass`` runs."""

from graphmill.passes.cleanup import dce  # noqa: F401
