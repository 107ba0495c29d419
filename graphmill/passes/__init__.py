"""Passes: the pass contract, the manager and its instruments, schedules, and the built-in passes."""

from .base import (
    APPROXIMATE,
    EXACT,
    REASSOCIATING,
    Analysis,
    GraphNote,
    Option,
    Pass,
    PassContext,
    PassResult,
    pass_class,
    register_analysis,
    register_pass,
    registered_passes,
)
from .instruments import (ChangeClaimCheck, PassCheckError, PassStepInfo, PreservedAnalysesCheck, PrintIR, TimePasses,
                          VerifyEach)
from .manager import PassFailure, PassManager, PipelineResult, as_schedule, run_passes
from .schedule import Call, Fixpoint, Repeat, Run, Schedule

__all__ = [
    "APPROXIMATE", "EXACT", "REASSOCIATING", "Analysis", "GraphNote", "Option", "Pass", "PassContext", "PassResult",
    "pass_class", "register_analysis", "register_pass", "registered_passes", "PassCheckError", "PassStepInfo",
    "ChangeClaimCheck", "PreservedAnalysesCheck", "PrintIR", "TimePasses", "VerifyEach", "PassFailure", "PassManager",
    "PipelineResult",
    "as_schedule", "run_passes", "Call", "Fixpoint", "Repeat", "Run", "Schedule",
]
