"""The RL placer. References: the legality check of test_chip_placers (written independently), the grid
cell centres (Circuit Training places a macro's centre on a cell centre), PPO's defining property (a decision
with positive advantage becomes more likely after an update), an exact checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graphmill.passes.chip import rl  # noqa: E402
from graphmill.passes.chip.cost import proxy_cost  # noqa: E402
from graphmill.passes.chip.generate import generate_netlist  # noqa: E402
from graphmill.passes.chip.problem import problem_from_graph  # noqa: E402

from .test_chip_placers import independent_legal  # noqa: E402


def _problem(seed=7, hard=8):
    return problem_from_graph(generate_netlist(hard=hard, soft=12, seed=seed))


def test_rollout_places_largest_first_on_legal_cell_centres():
    torch.manual_seed(0)
    p = _problem()
    ep = rl.Episode(p)
    w, h = p.sizes()
    assert list(ep.order) == sorted(ep.order, key=lambda m: -(w[m] * h[m]))
    ro = rl.rollout(rl.new_policy(), ep, torch.Generator().manual_seed(0))
    assert independent_legal(p)
    c = p.canvas
    gw, gh = c.width / c.columns, c.height / c.rows
    for m, a, mask in zip(ro.macros, ro.actions, ro.masks):
        if a < 0:
            continue
        assert mask[a]  # the chosen cell was legal
        assert p.x[m] == pytest.approx((a % c.columns + 0.5) * gw) and p.y[m] == pytest.approx((a // c.columns + 0.5) * gh)
    assert ro.proxy == pytest.approx(proxy_cost(p).proxy)


def test_ppo_update_makes_advantaged_action_more_likely():
    torch.manual_seed(0)
    p = _problem(seed=3, hard=4)
    ep = rl.Episode(p)
    policy = rl.new_policy()
    gen = torch.Generator().manual_seed(1)
    rolls = [rl.rollout(policy, ep, gen) for _ in range(2)]
    rolls[0].reward, rolls[1].reward = 1.0, 0.0  # the first episode is the better one
    ro = rolls[0]
    ok = ro.actions >= 0

    def logp_first():
        with torch.no_grad():
            hh = policy.encode(ep.t)
            lg = policy.logits(hh[torch.from_numpy(ro.macros[ok])], hh.mean(0), torch.from_numpy(ro.cells[ok]),
                               torch.from_numpy(ro.masks[ok]))
            return torch.log_softmax(lg, -1).gather(1, torch.from_numpy(ro.actions[ok])[:, None]).sum().item()

    before = logp_first()
    rl.ppo_update(policy, torch.optim.Adam(policy.parameters(), lr=1e-2), [(ep, rolls)], epochs=3, entropy=0.0)
    assert logp_first() > before


def test_checkpoint_resume_and_policy_file(tmp_path):
    probs = [_problem(seed=5, hard=4)]
    ck = str(tmp_path / "ck.pt")
    seen = []
    rl.train(probs, episodes=8, batch=4, seed=0, checkpoint=ck)
    state = torch.load(ck, weights_only=True)
    assert state["state"]["episodes"] == 8
    rl.train(probs, episodes=16, batch=4, seed=0, checkpoint=ck, progress=seen.append, progress_every=0.0)
    assert seen[0]["episodes"] == 12  # resumed at 8, one batch of 4 later
    assert torch.load(ck, weights_only=True)["state"]["episodes"] == 16
    policy = rl.new_policy()
    rl.save_policy(policy, tmp_path / "p.npz")
    again = rl.load_policy(tmp_path / "p.npz")
    for (k, a), (_, b) in zip(policy.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


def test_rl_place_is_legal_and_no_worse_than_its_episodes():
    p = _problem(seed=11)
    r = rl.rl_place(p, budget_s=3.0, seed=0)
    assert r.legal and independent_legal(p)
    assert r.report.proxy == pytest.approx(proxy_cost(p).proxy)
    # the best sampled/greedy episode's proxy: the soft-macro rounds after it keep the best, so never worse
    assert np.isfinite(r.stats["best_episode"]) and r.report.proxy <= r.stats["best_episode"] + 1e-9


def test_netlist_without_hard_macros():
    # Circuit Training's simple_with_coords has soft macros and standard cells only: nothing for the policy
    p = problem_from_graph(generate_netlist(hard=0, soft=6, seed=2))
    r = rl.rl_place(p, budget_s=1.0, seed=0)
    assert r.legal and np.isfinite(r.report.proxy)
