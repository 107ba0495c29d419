"""Cleanup passes: shape inference, constant folding, dead code, common subexpressions, simplification."""
