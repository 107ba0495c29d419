"""Fusion passes, each a list of rewrite rules (graphmill.ir.rewrite)."""
