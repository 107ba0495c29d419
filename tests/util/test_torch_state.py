"""graphmill.util.torch_state: what a checkpoint's torch state may hold. Reference: the module's and optimizer's
own state_dict (what a run writes), and hand-made damage."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from graphmill.util.torch_state import module_state_damage, optimizer_state_damage  # noqa: E402


class Masked(torch.nn.Module):
    """A layer with a constant -inf mask buffer, as an attention mask is lowered by to_torch."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.register_buffer("mask", torch.tensor([0.0, float("-inf"), 0.0]))


def test_a_modules_own_state_passes_even_with_a_minus_inf_constant():
    """The first form of the check called any non-finite value damage, which would refuse every resume of a model
    with a -inf mask constant (a final review). Its own state_dict is what a run writes."""
    m = Masked()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    m.lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert module_state_damage(m, m.state_dict()) == ""
    assert optimizer_state_damage(opt, opt.state_dict()) == ""


@pytest.mark.parametrize("damage, why", [
    (lambda s: s.update({"lin.weight": s["lin.weight"] * float("nan")}), "lin.weight holds a value that is not finite"),
    (lambda s: s.update({"mask": torch.zeros(3)}), ""),  # a finite value where the constant was -inf: not this check's
    (lambda s: s.update({"lin.bias": s["lin.bias"].to(torch.int64)}), "lin.bias is torch.int64"),
    (lambda s: s.update({"lin.bias": torch.zeros(4)}), "lin.bias is [4], this model's [3]"),
    (lambda s: s.pop("mask"), "the checkpoint has no mask"),
])
def test_damaged_module_state(damage, why):
    m = Masked()
    state = dict(m.state_dict())
    damage(state)
    got = module_state_damage(m, state)
    assert (why in got and got) if why else got == "", got
