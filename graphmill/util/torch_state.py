"""What in a torch checkpoint a module or optimizer could not take as it is: the one check of every resumable
command that keeps torch state (graphmill train, supernet train, train-policy and fine-tuning, the RL placers).

torch's ``load_state_dict`` takes a tensor of another dtype (cast without a word: an int64 weight's small values
became 0) and an optimizer state it cannot step with (an ``exp_avg`` of [2], an ``lr`` of 'fast': a traceback at
the first step), so each command asks here first and refuses the checkpoint in one line (outside checks).
torch is imported by the functions, not by this module: ``util`` is imported by every layer.
"""

from __future__ import annotations

import math
from typing import Any


def finite_number(x: Any) -> bool:
    """A finite int or float (not a bool): what a checkpoint's counts, times and losses are."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_count(x: Any) -> bool:
    """A whole number >= 0 (not a bool): what a checkpoint's step, sample and episode counts are."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def is_generator_state(x: Any) -> bool:
    """Whether ``x`` is what ``torch.get_rng_state`` and ``Generator.get_state`` return (a checkpoint's)."""
    import torch

    return isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.dim() == 1


def module_state_damage(module, saved: Any) -> str:
    """The first parameter or buffer where a checkpoint's model differs from ``module``'s: missing, unexpected,
    not a tensor, of another shape or element type, or holding a NaN or an infinity where ``module``'s own tensor
    is finite ('' when none): torch casts an int64 weight into a float parameter without a word (an outside check:
    the small weights became 0 and training went on)."""
    import torch

    if not isinstance(saved, dict):
        return "its model state is not a table of tensors"
    own = module.state_dict()
    for name, t in own.items():
        if name not in saved:
            return f"the checkpoint has no {name}"
        if not isinstance(saved[name], torch.Tensor):
            return f"the checkpoint's {name} is a {type(saved[name]).__name__}, not a tensor"
        if tuple(saved[name].shape) != tuple(t.shape):
            return f"the checkpoint's {name} is {list(saved[name].shape)}, this model's {list(t.shape)}"
        if saved[name].dtype != t.dtype:
            return f"the checkpoint's {name} is {saved[name].dtype}, this model's {t.dtype}"
        if t.is_floating_point() and bool((~torch.isfinite(saved[name]) & torch.isfinite(t)).any()):
            # a run stops before writing a NaN weight; a constant's own -inf (an attention mask) stays where it is
            return f"the checkpoint's {name} holds a value that is not finite"
    extra = [name for name in saved if name not in own]
    return f"the checkpoint has {extra[0]}, which this model does not" if extra else ""


def _same_kind(saved: Any, own: Any) -> bool:
    """Whether an optimizer setting from a checkpoint is of the kind the optimizer's own is: a finite number for a
    number, a sequence of as many for a sequence (Adam's betas), the same type otherwise (a flag, None)."""
    if finite_number(own):
        return finite_number(saved)
    if isinstance(own, (tuple, list)):
        return isinstance(saved, (tuple, list)) and len(saved) == len(own) and all(map(_same_kind, saved, own))
    return type(saved) is type(own)


def optimizer_state_damage(optimizer, saved: Any) -> str:
    """What in a checkpoint's optimizer state this ``optimizer`` could not step with ('' when nothing): its groups'
    settings, and per parameter a state tensor of the parameter's shape and type (or a scalar, Adam's step). torch
    loads both as they are, and the first step failed with a traceback: an exp_avg of [2], an lr of 'fast' (an
    outside check)."""
    import torch

    if not isinstance(saved, dict):
        return "its optimizer state is not this optimizer's"
    own = optimizer.state_dict()
    groups, state = saved.get("param_groups"), saved.get("state")
    if not (isinstance(groups, list) and len(groups) == len(own["param_groups"]) and isinstance(state, dict)):
        return "its optimizer state is not this optimizer's"
    for i, (g, mine) in enumerate(zip(groups, own["param_groups"])):
        if not isinstance(g, dict) or g.get("params") != mine["params"]:
            return f"its optimizer's parameter group {i} is not this model's"
        for key, value in mine.items():
            if key != "params" and not (key in g and _same_kind(g[key], value)):
                return f"its optimizer's {key} is {str(g.get(key))[:40]}, not what graphmill writes"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for index, entry in state.items():
        if not (isinstance(index, int) and 0 <= index < len(params) and isinstance(entry, dict)):
            return f"its optimizer's state {str(index)[:20]} is not one of this model's parameters"
        p = params[index]
        for key, t in entry.items():
            if t is None:  # SGD's momentum buffer before the first step
                continue
            if not isinstance(t, torch.Tensor) or not (t.dim() == 0 or (t.shape == p.shape and t.dtype == p.dtype)):
                what = f"{list(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
                return f"its optimizer's {key} of parameter {index} is {what}, the parameter {list(p.shape)} {p.dtype}"
    return ""
