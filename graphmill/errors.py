"""Public home of graphmill's error hierarchy (defined in ``graphmill.ir.errors``)."""

from graphmill.ir.errors import (  # noqa: F401
    ExecutionError,
    GraphmillError,
    IRError,
    ModelLoadError,
    ShapeInferenceError,
    UnsafeModelError,
    UnsupportedModelError,
    UserInputError,
    VerificationError,
)
