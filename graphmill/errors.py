"""Public home of graphmill's error hierarchy (defined in ``graphmill.util.errors``)."""

from graphmill.util.errors import (  # noqa: F401
    ExecutionError,
    GraphmillError,
    IRError,
    ModelLoadError,
    ModelWarning,
    SearchWarning,
    ShapeInferenceError,
    SimulationWarning,
    TracingWarning,
    UnsafeModelError,
    UnsupportedModelError,
    UserInputError,
    VerificationError,
)
