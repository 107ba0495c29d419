"""One training step taken by a torch module and by graphmill's lowering of it, for tests that compare them."""
from __future__ import annotations

import copy
from typing import Any


def one_sgd_step_each(original: Any, lowered: Any, x: Any, target: Any, *, lr: float = 0.1) -> tuple[Any, Any]:
    """One SGD step on a squared error, taken by a copy of ``original`` (the torch module, the reference) and by
    ``lowered`` (``to_torch`` of its import); returns both outputs on ``x`` afterwards, as numpy arrays."""
    import torch

    eager = copy.deepcopy(original)
    for net in (eager, lowered):
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        ((net(x) - target) ** 2).mean().backward()
        opt.step()
    with torch.no_grad():
        return eager(x).numpy(), lowered(x).numpy()
