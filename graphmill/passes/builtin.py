"""Imports every built-in pass module so that their ``@register_pass`` runs."""

from graphmill.passes.cleanup import cse, dce, fold_constants, shape_inference, simplify  # noqa: F401
from graphmill.passes.fusion import activation, conv_bn, gelu, layernorm, matmul_add, merge, ort_contrib  # noqa: F401
from graphmill.passes.scaling import compound  # noqa: F401
from graphmill.passes.pipeline import partition  # noqa: F401
from graphmill.passes.placement import experts, placement_pass  # noqa: F401
from graphmill.passes.lowering import lower  # noqa: F401
from graphmill.passes.learned import passes as learned_passes  # noqa: F401
