"""The services passes get from the frontend and backends, wired in at the top of the package.

Passes never import ``graphmill.frontend`` or ``graphmill.backends`` (the one-way architecture:
docs/architecture.md). What a pass needs from them is an interface defined in
``graphmill.passes.base`` and carried by the ``PassContext``:

- ``NodeEvaluator``: ONNX Runtime on a one-node model (``backends.onnxruntime.OrtNodeEvaluator``);
  fold-constants asks it to evaluate the ops it does not compute with numpy;
- ``ShapeInferencer``: onnx's shape inference (``frontend.onnx_shape_inference.OnnxShapeInferencer``)
  for the outputs of ops the op registry has no entry for.

``graphmill.optimize()`` passes ``default_providers()`` to its context explicitly; importing
``graphmill`` also installs them as the process-wide defaults (``install_default_providers``), so a
``PassContext()`` built by a user, a ``PassManager`` or ``run_passes`` used directly, and the tests
behave like ``optimize()``. To run passes with other services (or none), give them to the context:
``PassContext(node_evaluator=my_evaluator, shape_inferencer=None)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from graphmill.passes.base import PassContext, Providers, set_default_providers


@lru_cache(maxsize=1)
def default_providers() -> Providers:
    """ONNX Runtime's node evaluator and onnx's shape inferencer (imported on first use, built once)."""
    from graphmill.backends.onnxruntime import OrtNodeEvaluator
    from graphmill.frontend.onnx_shape_inference import OnnxShapeInferencer

    return Providers(node_evaluator=OrtNodeEvaluator(), shape_inferencer=OnnxShapeInferencer())


def pass_context(**kwargs: Any) -> PassContext:
    """A ``PassContext`` (``seed``, ``allow``, ...) carrying ``default_providers()`` explicitly."""
    p = default_providers()
    kwargs.setdefault("node_evaluator", p.node_evaluator)
    kwargs.setdefault("shape_inferencer", p.shape_inferencer)
    return PassContext(**kwargs)


def install_default_providers() -> None:
    """Make ``default_providers`` what a ``PassContext`` built without providers uses."""
    set_default_providers(default_providers)
