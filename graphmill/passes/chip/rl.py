"""The RL macro placer: hard macros placed one at a time, largest first, onto candidate positions by a policy
with a graph encoder, masked to legal positions; reward -proxy cost; trained with PPO; pre-trained on Circuit
Training's tiny netlists plus generated ones, fine-tuned on the netlist at hand (Circuit Training's method,
Mirhoseini et al., Nature 2021, with graphmill's proxy cost).

Actions: the grid cells (``sub = 1``, Circuit Training's action space, the default) or a finer ``sub`` x ``sub``
lattice per cell (``positions.lattice``). Where in the chosen cell the macro goes (``refine``, default 5): a
deterministic rule of the environment, not the policy, picks among ``refine`` x ``refine`` offsets spanning the cell
(centre, +-1/4, +-1/2 of it) the legal one of least HPWL increase plus the increase of the densest 10% of cells'
densities (squared densities as a tie-break; ``Episode.refine_position``); a cell is unmasked when some offset is
legal (``positions.legal_positions``). Why: on cell centres a 133-micron-tall macro on a 68-micron cell always fills
that cell, and the proxy's density term is the mean of the densest cells; the rule costs a few evaluations per
macro, not a larger action space (``sub = 2`` measured worse at equal time). ``refine = 1``: Circuit Training's cell
centres exactly. The offset sweep (``offset_sweeps``, default 4; ``Episode.sweep_offsets``): once every hard
macro is placed, each one's offset is re-chosen among the same cell's offsets by the exact proxy cost, now that
every macro is known (the rule above sees only those placed before); the policy's cells are kept. It runs on each
new best episode, the greedy decode and the finale (0.6583 / 0.6618 against 0.6674 / 0.6702 at 200 s on
Ariane133, seeds 0 / 1), not before every episode's reward (``episode_sweeps``: fewer episodes, measured worse).
The policy: a GraphSAGE encoder (the learned passes' ``SageLayer``,
graphmill.passes.learned.policy) over the module graph (ports, hard and soft macros; an edge per module pair sharing
a net) gives each macro an embedding, computed once per episode (it does not change within one); at each step the
macro to place and the netlist's mean embedding are scored against every position's features (``Episode.features``:
position, the hard and soft macro density under the footprint, the exact increase of the net-weighted HPWL to the
modules already placed, ...), plus a prior linear in the standardized HPWL increase and densities (a greedy placer's
score, learned with the rest): one logit per position, illegal positions masked (the macro would leave the canvas or
overlap a placed macro). The features make the policy independent of the grid's size, so one policy serves every
netlist. Episodes run in lockstep batches (one policy call per step for all). After the hard macros, the soft macros
are placed by force-directed rounds and the episode's reward is -proxy cost.

The soft macros sit, during an episode, where the start has them (a start whose hard macros overlap first
gets SA's global placement); with ``adapt_start`` (the default) episodes then start from the soft-macro
positions of the best placement so far (after force-directed rounds around its hard macros), so the density
and HPWL features see clusters placed for a good macro placement rather than for the start's. This departs
from Circuit Training, whose episodes all start from the initial placement; every hard macro is still placed
by the policy in every episode.

Last, ``rl_place`` descends from the best placement (``descent.coordinate_descent``, Circuit Training's
``cd_finetune`` plus exchanges of identical macros): every macro moves to its cheapest legal position within 5
cells of the policy's, knowing all the others. On Ariane133 it is what brings the placer level with SA (0.6505
against 0.6526 over seeds 0-5 at 600 s; the policy's best episodes alone 0.6590 on seeds 0-2, against SA's
0.6541), while SA's own placements are already at a local optimum of the same moves (README, "Chip macro
placement").

PPO: batches of episodes, advantages = normalized rewards, a clipped surrogate over every decision, an entropy
bonus. A checkpoint (policy, optimizer, episodes, best placement) is written atomically every batch when a
path is given, and a run resumes from it.
"""

from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from graphmill.util.errors import UserInputError
from graphmill.util.files import atomic_write_bytes, load_torch_checkpoint, save_torch_checkpoint
from graphmill.util.interrupts import INTERRUPTS, is_interrupt
from graphmill.util.torch_state import is_count, module_state_damage, optimizer_state_damage

from .cost import DEFAULT_WEIGHTS, ProxyCost, proxy_cost
from .descent import check_options, coordinate_descent
from .fd import ForceDirected, module_adjacency
from .legality import EPS, inside, legality, legalize, place_nearest
from .positions import (add_footprint, assemble_features, footprint_density_increase, footprint_top_increase, lattice,
                        legal_positions, offsets_fit, position_features)
from .problem import KIND_HARD, KIND_PORT, KIND_SOFT, ORIENT_CODE, ChipProblem
from .sa import PlaceResult, Progress, global_placement

CELL_FEATURES = 11
NODE_FEATURES = 8
DEFAULT_SUB = 1
DEFAULT_REFINE = 5
DEFAULT_REFINE_DENSITY = 1.0
DEFAULT_REFINE_TOP = True  # Episode.refine_position: the densest-10% increase, squares as a tie-break (0.1 x)
REFINE_SQUARES = 0.1
DEFAULT_POLISH_NEAR = 0.0  # train: share of the time for polishing near-best episodes that are no record
DEFAULT_OFFSET_SWEEPS = 4  # Episode.sweep_offsets: at most this many sweeps re-deciding every macro's offset (0: off)
FINALE_RESERVE_S = 20.0  # rl_place: at most this much of the budget for the greedy decode and force-directed rounds
DEFAULT_DESCENT_EPOCHS = 8  # rl_place: coordinate-descent epochs after the policy (descent.coordinate_descent; 0: off)
DESCENT_SHARE, DESCENT_RESERVE_S = 0.1, 60.0  # rl_place: the budget kept for the descent: this share, at most this
DEFAULT_POLICY = os.path.join(os.path.dirname(__file__), "data", "rl_policy.npz")


class Episode:
    """What one netlist needs for episodes: the problem, its graph tensors, the placement order, the candidate
    positions (a ``sub`` x ``sub`` lattice per grid cell) and the soft macros' start positions.

    The soft macros' positions during an episode are the start's (Circuit Training's initial placement); a
    start whose hard macros overlap (e.g. every node at the canvas centre) first gets the global placement SA
    uses (force-directed rounds over all macros, legalization, force-directed soft macros), so that the soft
    macros start somewhere meaningful; the hard macros' start positions are never used."""

    def __init__(self, problem: ChipProblem, weights=DEFAULT_WEIGHTS, *, sub: int = DEFAULT_SUB,
                 seed: int = 0, refine: int = DEFAULT_REFINE, refine_density: float = DEFAULT_REFINE_DENSITY,
                 refine_top: bool = DEFAULT_REFINE_TOP, offset_sweeps: int = DEFAULT_OFFSET_SWEEPS) -> None:
        import torch

        self.p = p = problem
        self.cost = ProxyCost(p, weights)
        if not legality(p)[0] and len(p.hard):
            saved = p.copy_placement()
            global_placement(p, self.cost, seed=seed)
            keep = p.kind == KIND_HARD  # only the soft macros' (and cells') positions are kept
            p.x[keep], p.y[keep], p.orient[keep] = saved[0][keep], saved[1][keep], saved[2][keep]
        self.start = p.copy_placement()
        self.adj = module_adjacency(p)
        ptr, nbr, wts = self.adj
        w, h = p.sizes()
        self.w, self.h = w, h
        self.order = p.hard[p.fixed[p.hard] == 0]
        self.order = self.order[np.argsort(-(w[self.order] * h[self.order]), kind="stable")]
        c = p.canvas
        self.gw, self.gh = c.width / c.columns, c.height / c.rows
        n = len(p.x)
        deg = np.diff(ptr).astype(np.float64)
        feats = np.zeros((n, NODE_FEATURES), dtype=np.float32)
        feats[np.arange(n), np.minimum(p.kind, 3)] = 1.0
        feats[:, 4] = w / c.width
        feats[:, 5] = h / c.height
        feats[:, 6] = np.log1p(deg) / 5
        feats[:, 7] = np.log1p(np.array([wts[ptr[i]:ptr[i + 1]].sum() for i in range(n)])) / 5
        src = np.repeat(np.arange(n), np.diff(ptr))
        self.t = {"x": torch.from_numpy(feats), "src": torch.from_numpy(src), "dst": torch.from_numpy(nbr.copy())}
        ones = torch.ones(len(src))
        self.t["deg_in"] = torch.zeros(n).index_add_(0, self.t["dst"], ones).clamp(min=1)[:, None]
        self.t["deg_out"] = torch.zeros(n).index_add_(0, self.t["src"], ones).clamp(min=1)[:, None]
        self.sub = int(sub)
        self.cx, self.cy = lattice(p, self.sub)
        ports = p.kind == KIND_PORT
        port_c = (float(np.mean(p.x[ports])), float(np.mean(p.y[ports]))) if ports.any() else (c.width / 2, c.height / 2)
        scale = c.width + c.height
        self.static = np.zeros((len(self.cx), 2), dtype=np.float32)  # features 8, 9 (see features)
        self.static[:, 0] = (np.abs(self.cx - port_c[0]) + np.abs(self.cy - port_c[1])) / scale
        self.static[:, 1] = np.minimum(np.minimum(self.cx, c.width - self.cx) / c.width,
                                       np.minimum(self.cy, c.height - self.cy) / c.height)
        self.soft_grid = np.zeros(c.columns * c.rows)
        for s in np.nonzero(p.kind == KIND_SOFT)[0]:
            add_footprint(self.soft_grid, p.x[s] - w[s] / 2, p.x[s] + w[s] / 2, p.y[s] - h[s] / 2, p.y[s] + h[s] / 2,
                          self.gw, self.gh, c.columns, c.rows, 1.0)
        self.wl_norm = max((c.width + c.height) * p.net_count, 1e-12)
        self.fd = ForceDirected(p, adjacency=self.adj) if p.soft.size else None
        # sub-cell refinement: offsets (a refine x refine lattice spanning the chosen position's cell) and the
        # weight turning the squared-density increase into proxy units (density weight x 1 / (0.1 x cells): a
        # change f of one of the densest 10% of cells moves the density term by that much)
        self.refine = int(refine)
        off = np.linspace(-0.5, 0.5, self.refine) if self.refine > 1 else np.zeros(1)
        ox, oy = np.meshgrid(off * self.gw / self.sub, off * self.gh / self.sub)
        self.refine_dx, self.refine_dy = ox.ravel().copy(), oy.ravel().copy()
        self.refine_lam = float(refine_density) * float(weights[1]) / max(0.1 * c.columns * c.rows, 1.0)
        self.refine_top = bool(refine_top)
        self.top_k = max(int(np.floor(0.1 * c.columns * c.rows)), 1)  # the proxy's densest 10% (cost._top_mean)
        self.offset_sweeps = int(offset_sweeps)
        self.all_hard = p.hard.astype(np.int64)

    def settle(self, placement: tuple, rounds: int = 10) -> tuple[float, tuple]:
        """(proxy, placement) after force-directed rounds for the soft macros of ``placement`` keeping the best
        (the hard macros stay where the policy put them): a new best episode's soft macros settled further."""
        self.p.set_placement(placement)
        if self.fd is None:
            return self.cost.evaluate().proxy, self.p.copy_placement()
        v = self.fd.run(self.cost, rounds=rounds, seed=1)
        return v, self.p.copy_placement()

    def polish(self, placement: tuple, actions: np.ndarray | None, rounds: int = 2,
               fd_rounds: int = 10) -> tuple[float, tuple]:
        """(proxy, placement) of a new best episode: ``settle`` alone when ``offset_sweeps`` is 0 (or the
        actions are unknown), else ``rounds`` x (``sweep_offsets`` with every macro known, then ``settle``): the
        soft macros move after the offsets change, which changes the best offsets again. Neither step raises
        the proxy cost; hard macros stay within the policy's chosen positions."""
        if self.offset_sweeps <= 0 or actions is None or self.refine <= 1:
            return self.settle(placement, rounds=fd_rounds)
        v, pl = math.inf, placement
        for _ in range(max(int(rounds), 1)):
            self.p.set_placement(pl)
            self.sweep_offsets(actions)
            v, pl = self.settle(self.p.copy_placement(), rounds=fd_rounds)
        return v, pl

    def restart_from(self, placement: tuple) -> None:
        """Episodes from now on start with the soft macros (and cells) where ``placement`` has them: the best
        placement so far, whose soft macros the force-directed rounds placed around its hard macros."""
        p, c = self.p, self.p.canvas
        keep = p.kind != KIND_HARD
        x, y, o = (a.copy() for a in self.start)
        x[keep], y[keep], o[keep] = placement[0][keep], placement[1][keep], placement[2][keep]
        self.start = (x, y, o)
        self.soft_grid[:] = 0.0
        w, h = self.w, self.h
        for s in np.nonzero(p.kind == KIND_SOFT)[0]:
            add_footprint(self.soft_grid, x[s] - w[s] / 2, x[s] + w[s] / 2, y[s] - h[s] / 2, y[s] + h[s] / 2,
                          self.gw, self.gh, c.columns, c.rows, 1.0)

    def features(self, m: int, step: int, x, y, known, placed, n_placed, hard_grid) -> tuple[np.ndarray, np.ndarray]:
        """(features [positions, CELL_FEATURES] float32, legal mask [positions]) for macro m at ``step``:
        0-1 position / canvas, 2 hard-macro density under the footprint, 3 the densest cell it would leave,
        4 soft-macro density under it, 5-7 the HPWL increase, soft and hard density standardized over the
        legal positions, 8 distance to the ports' centre, 9 distance to the nearest edge, 10 the share of
        macros placed (``positions.position_features``)."""
        p, c = self.p, self.p.canvas
        n = len(self.cx)
        legal = np.zeros(n, dtype=np.bool_)
        centre_legal = np.zeros(n, dtype=np.bool_)
        dwl, hden, htop, sden = (np.zeros(n) for _ in range(4))
        # legality by stamping (legal_positions), so position_features skips its own test (n_placed = 0)
        legal_positions(m, self.cx, self.cy, self.refine_dx, self.refine_dy, c.columns * self.sub, self.gw / self.sub,
                        self.gh / self.sub, x, y, p.w, p.h, p.orient, placed, n_placed, c.width, c.height, EPS, legal)
        position_features(m, self.cx, self.cy, x, y, p.w, p.h, p.orient, known, placed, 0, p.pin_mod, p.pin_dx,
                          p.pin_dy, p.net_ptr, p.net_pins, p.net_weight, p.mod_net_ptr, p.mod_nets, hard_grid,
                          self.soft_grid, self.gw, self.gh, c.columns, c.rows, c.width, c.height, EPS, self.wl_norm,
                          centre_legal, dwl, hden, htop, sden)
        f = np.empty((n, CELL_FEATURES), dtype=np.float32)
        assemble_features(f, self.cx, self.cy, c.width, c.height, legal, dwl, hden, htop, sden, self.static,
                          step / max(len(self.order), 1), np.empty(n))
        return f, legal


    def refine_position(self, m: int, a: int, x, y, known, placed, n_placed, hard_grid) -> tuple[float, float]:
        """The exact centre for macro m in the policy's chosen position ``a``: among the ``refine`` x ``refine``
        offsets spanning a's cell, the legal one of least HPWL increase (to the modules placed so far) plus the
        density weight x the density increase: with ``refine_top`` (the default) the increase of the densest 10%
        of cells (``positions.footprint_top_increase``, hard + soft macros, the k-th densest cell's density as
        threshold) plus ``REFINE_SQUARES`` x the increase of the squared grid-cell densities
        (``footprint_density_increase``), without it the squares alone; the cell centre itself when ``refine`` is
        1. A deterministic rule of the environment (like Circuit Training's legalization), evaluated for the
        chosen cell only: the action space and the policy are unchanged. Why the top-10% term: the squares alone
        push every macro as far from its neighbours as its cell allows, leaving macro-wide holes that later
        macros fill edge to edge (measured on Ariane133, 200 s, seeds 0 / 1: density 0.4857 / 0.4840 against
        0.4898 / 0.4870 with squares alone)."""
        if self.refine <= 1:
            return float(self.cx[a]), float(self.cy[a])
        p, c = self.p, self.p.canvas
        X = self.cx[a] + self.refine_dx
        Y = self.cy[a] + self.refine_dy
        k = len(X)
        legal = np.zeros(k, dtype=np.bool_)
        dwl, hden, htop, sden, dden = (np.zeros(k) for _ in range(5))
        position_features(m, X, Y, x, y, p.w, p.h, p.orient, known, placed, n_placed, p.pin_mod, p.pin_dx, p.pin_dy,
                          p.net_ptr, p.net_pins, p.net_weight, p.mod_net_ptr, p.mod_nets, hard_grid, self.soft_grid,
                          self.gw, self.gh, c.columns, c.rows, c.width, c.height, EPS, self.wl_norm, legal, dwl, hden,
                          htop, sden)
        footprint_density_increase(X, Y, float(self.w[m]), float(self.h[m]), hard_grid, self.soft_grid, self.gw,
                                   self.gh, c.columns, c.rows, dden)
        if self.refine_top:
            d = hard_grid + self.soft_grid
            tau = float(np.partition(d, len(d) - self.top_k)[len(d) - self.top_k])  # the k-th densest cell
            top = np.zeros(k)
            footprint_top_increase(X, Y, float(self.w[m]), float(self.h[m]), hard_grid, self.soft_grid, self.gw,
                                   self.gh, c.columns, c.rows, tau, top)
            dden = top + REFINE_SQUARES * dden
        score = np.where(legal, dwl + self.refine_lam * dden, np.inf)
        i = int(np.argmin(score))
        if not np.isfinite(score[i]):  # cannot happen for a legal action (its centre is an offset); be safe
            return float(self.cx[a]), float(self.cy[a])
        return float(X[i]), float(Y[i])


    def sweep_offsets(self, actions: np.ndarray, sweeps: int | None = None) -> int:
        """Re-decide the sub-cell offset of every hard macro once all are placed, on ``self.p``'s current
        placement (changed in place): for each macro in placement order whose ``actions`` entry is a position
        (``actions[t]`` for ``self.order[t]``; -1, a macro placed off the lattice, is left alone), among the
        ``refine`` x ``refine`` offsets of the SAME position the policy chose, the legal one (inside the canvas,
        clear of every other hard macro) of least exact proxy cost (``ProxyCost.move``, soft macros where they
        are); repeated for at most ``sweeps`` (default ``offset_sweeps``) sweeps, until one moves nothing.
        Returns the number of moves. The policy's decisions (the positions) are kept; only the rule's offset is
        decided again, now knowing every macro, not just those placed before (``refine_position``); nothing
        moves a macro to another position. The proxy cost never rises (a move is kept only when it lowers it)."""
        sweeps = self.offset_sweeps if sweeps is None else int(sweeps)
        if sweeps <= 0 or self.refine <= 1:
            return 0
        p, c, cost = self.p, self.p.canvas, self.cost
        cur = cost.evaluate().proxy
        ok = np.zeros(len(self.refine_dx), dtype=np.bool_)
        w, h = p.sizes()  # as oriented (the sweep changes no orientation)
        moves = 0
        for _ in range(sweeps):
            moved = 0
            for m, a in zip(self.order, actions):
                m, a = int(m), int(a)
                if a < 0:
                    continue
                X = self.cx[a] + self.refine_dx
                Y = self.cy[a] + self.refine_dy
                offsets_fit(m, X, Y, p.x, p.y, w, h, self.all_hard, c.width, c.height, EPS, ok)
                x0, y0 = float(p.x[m]), float(p.y[m])
                bv, bx, by = cur, x0, y0
                for i in np.nonzero(ok)[0]:
                    if X[i] == x0 and Y[i] == y0:
                        continue
                    cost.move(m, X[i], Y[i])
                    v = cost.proxy()
                    if v < bv - 1e-12:
                        bv, bx, by = v, float(X[i]), float(Y[i])
                cost.move(m, bx, by)
                if (bx, by) != (x0, y0):
                    cur = bv
                    moved += 1
            moves += moved
            if not moved:
                break
        return moves


def _policy_class():
    import torch
    from torch import nn

    from graphmill.passes.learned.policy import SageLayer

    class PlacementPolicy(nn.Module):
        """GraphSAGE encoder (the learned passes' layer) + a position scorer: a query from the macro's and the
        netlist's embeddings against every position's features, a learned per-position bias, and a prior
        linear in the standardized HPWL increase and densities (the greedy placer's score; learned too)."""

        def __init__(self, hidden: int = 32, layers: int = 2) -> None:
            super().__init__()
            self.config = {"hidden": hidden, "layers": layers}
            self.inp = nn.Sequential(nn.Linear(NODE_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.sage = nn.ModuleList(SageLayer(hidden) for _ in range(layers))
            self.cell = nn.Sequential(nn.Linear(CELL_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            self.query = nn.Linear(2 * hidden, hidden)
            self.bias = nn.Sequential(nn.Linear(CELL_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            with torch.no_grad():  # start as the prior alone: a greedy placer's score, sampled
                for lin in (self.query, self.bias[-1]):
                    lin.weight.zero_()
                    lin.bias.zero_()
            # weights on features 5 (HPWL increase), 6 (soft density), 7 (hard density), standardized
            self.prior = nn.Parameter(torch.tensor([-3.0, -10.0, 0.0]))

        def encode(self, t: dict) -> torch.Tensor:
            h = self.inp(t["x"])
            for layer in self.sage:
                h = layer(h, t)
            return h

        def logits(self, hm: torch.Tensor, g: torch.Tensor, cells: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            """hm [T, H] (the macros to place), g [H], cells [T, C, F], mask [T, C] -> logits [T, C]."""
            q = self.query(torch.cat([hm, g.expand(hm.shape[0], -1)], -1))  # [T, H]
            # only the legal positions go through the scorer (the rest are masked anyway): about half the work
            rows = mask.nonzero()[:, 0]
            sel = cells[mask]  # [N, F]
            s = (self.cell(sel) * q[rows]).sum(-1) / math.sqrt(q.shape[-1])
            s = s + self.bias(sel)[:, 0] + sel[:, 5:8] @ self.prior
            return torch.full(mask.shape, -1e9, dtype=s.dtype).index_put((mask.nonzero(as_tuple=True)), s)

    return PlacementPolicy


def new_policy(hidden: int = 32, layers: int = 2):
    return _policy_class()(hidden, layers)


def save_policy(policy, path: str | os.PathLike) -> None:
    """The policy's weights as .npz (architecture in the arrays' names' file ``config``), atomically."""
    buf = io.BytesIO()
    arrays = {k: v.detach().cpu().numpy() for k, v in policy.state_dict().items()}
    arrays["__config__"] = np.array([policy.config["hidden"], policy.config["layers"]])
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def load_policy(path: str | os.PathLike):
    """A policy saved by ``save_policy`` (read with allow_pickle=False: no code runs)."""
    import torch

    from graphmill.util.files import read_npz_arrays

    try:
        arrays = read_npz_arrays(path)
        hidden, layers = (int(v) for v in arrays.pop("__config__"))
        # built before the weights are read: a hostile file must not ask for gigabytes (an outside check)
        if not (1 <= hidden <= 1024 and 0 <= layers <= 16):
            raise ValueError(f"hidden {hidden}, layers {layers}: expected hidden in [1, 1024], layers in [0, 16]")
        policy = new_policy(hidden, layers)
        policy.load_state_dict({k: torch.from_numpy(a.copy()) for k, a in arrays.items()})
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError) as e:
        raise UserInputError(f"{path}: not a chip placement policy of this version ({e})") from None
    return policy


@dataclass
class Rollout:
    reward: float
    proxy: float
    placement: tuple
    macros: np.ndarray  # [T]
    actions: np.ndarray  # [T]
    cells: np.ndarray  # [T, C, F]
    masks: np.ndarray  # [T, C]
    logp: np.ndarray  # [T]


def rollouts(policy, ep: Episode, gen, n: int = 1, *, greedy: bool = False, fd_rounds: int = 8,
             sweep: int = 0) -> list[Rollout]:
    """``n`` episodes in lockstep (one policy call per step for all of them): place the hard macros largest
    first (sampling, or the most likely position when ``greedy``), with ``sweep`` > 0 re-decide their sub-cell
    offsets (at most ``sweep`` sweeps of ``Episode.sweep_offsets``), force-directed rounds for the soft
    macros, reward -proxy. The graph embedding is computed once: it does not change within an episode."""
    import torch

    p, c = ep.p, ep.p.canvas
    n_nodes = len(p.x)
    T, P = len(ep.order), len(ep.cx)
    xs = np.repeat(ep.start[0][None], n, 0)
    ys = np.repeat(ep.start[1][None], n, 0)
    known = np.repeat((p.kind != KIND_HARD)[None], n, 0)
    fixed_hard = p.hard[p.fixed[p.hard] == 1]
    known[:, fixed_hard] = True
    placed = np.zeros((n, n_nodes), dtype=np.int64)
    placed[:, :len(fixed_hard)] = fixed_hard
    n_placed = len(fixed_hard)
    grids = np.zeros((n, c.columns * c.rows))
    for j in fixed_hard:
        for b in range(n):
            add_footprint(grids[b], p.x[j] - ep.w[j] / 2, p.x[j] + ep.w[j] / 2, p.y[j] - ep.h[j] / 2,
                          p.y[j] + ep.h[j] / 2, ep.gw, ep.gh, c.columns, c.rows, 1.0)
    cells = np.zeros((n, T, P, CELL_FEATURES), dtype=np.float32)
    masks = np.zeros((n, T, P), dtype=np.bool_)
    actions = np.full((n, T), -1, dtype=np.int64)
    logps = np.zeros((n, T), dtype=np.float32)
    with torch.no_grad():
        h = policy.encode(ep.t)
        g = h.mean(0)
        for step, m in enumerate(ep.order):
            m = int(m)
            for b in range(n):
                cells[b, step], masks[b, step] = ep.features(m, step, xs[b], ys[b], known[b], placed[b], n_placed,
                                                             grids[b])
            ok = masks[:, step].any(1)
            if ok.any():
                idx = np.nonzero(ok)[0]
                lg = policy.logits(h[m].expand(len(idx), -1), g, torch.from_numpy(cells[idx, step]),
                                   torch.from_numpy(masks[idx, step]))
                lsm = torch.log_softmax(lg, -1)
                a = torch.argmax(lg, -1) if greedy else torch.multinomial(lsm.exp(), 1, generator=gen)[:, 0]
                logps[idx, step] = lsm.gather(1, a[:, None])[:, 0].numpy()
                actions[idx, step] = a.numpy()
            for b in range(n):
                if ok[b]:
                    xs[b, m], ys[b, m] = ep.refine_position(m, int(actions[b, step]), xs[b], ys[b], known[b],
                                                            placed[b], n_placed, grids[b])
                else:  # nowhere on the lattice: the nearest legal position off it
                    p.x[:], p.y[:] = xs[b], ys[b]
                    place_nearest(p, m, placed[b, :n_placed])
                    xs[b, m], ys[b, m] = p.x[m], p.y[m]
                placed[b, n_placed] = m
                known[b, m] = True
                add_footprint(grids[b], xs[b, m] - ep.w[m] / 2, xs[b, m] + ep.w[m] / 2, ys[b, m] - ep.h[m] / 2,
                              ys[b, m] + ep.h[m] / 2, ep.gw, ep.gh, c.columns, c.rows, 1.0)
            n_placed += 1
    out = []
    for b in range(n):
        p.set_placement((xs[b], ys[b], ep.start[2]))
        if sweep > 0:
            ep.sweep_offsets(actions[b], sweep)
        if ep.fd is not None and fd_rounds:
            ep.fd.run(None, rounds=fd_rounds, seed=0)
        proxy = ep.cost.evaluate().proxy
        out.append(Rollout(-proxy, proxy, p.copy_placement(), ep.order.copy(), actions[b], cells[b], masks[b],
                           logps[b]))
    return out


def rollout(policy, ep: Episode, gen, *, greedy: bool = False, fd_rounds: int = 8, sweep: int = 0) -> Rollout:
    """One episode (``rollouts`` with n = 1)."""
    return rollouts(policy, ep, gen, 1, greedy=greedy, fd_rounds=fd_rounds, sweep=sweep)[0]


def ppo_update(policy, optim, ep_rolls: list[tuple[Episode, list[Rollout]]], *, epochs: int = 4, clip: float = 0.2,
               entropy: float = 0.01) -> float:
    """Clipped-surrogate PPO over every decision of the batch; advantages are each netlist's rewards
    normalized (netlists differ in scale)."""
    import torch

    total = 0.0
    for _ in range(epochs):
        optim.zero_grad()
        loss = 0.0
        for ep, rolls in ep_rolls:
            r = np.array([ro.reward for ro in rolls])
            adv = (r - r.mean()) / (r.std() + 1e-8)
            h = policy.encode(ep.t)
            g = h.mean(0)
            for ro, a_ in zip(rolls, adv):
                ok = ro.actions >= 0
                if not ok.any():
                    continue
                lg = policy.logits(h[torch.from_numpy(ro.macros[ok])], g, torch.from_numpy(ro.cells[ok]),
                                   torch.from_numpy(ro.masks[ok]))
                logp_all = torch.log_softmax(lg, -1)
                acts = torch.from_numpy(ro.actions[ok])
                logp = logp_all.gather(1, acts[:, None])[:, 0]
                ratio = torch.exp(logp - torch.from_numpy(ro.logp[ok]))
                a = float(a_)
                surr = torch.minimum(ratio * a, torch.clamp(ratio, 1 - clip, 1 + clip) * a)
                probs = torch.softmax(lg, -1)
                ent = -(probs * logp_all.clamp(min=-1e4)).sum(-1)
                loss = loss - (surr.mean() + entropy * ent.mean()) / (len(rolls) * len(ep_rolls))
        if not torch.is_tensor(loss):  # no decisions in the batch (no movable hard macros): nothing to learn
            return 0.0
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optim.step()
        total = float(loss.detach())
    return total


def run_key(problems: list[ChipProblem], weights) -> str:
    """What a checkpoint is valid for: the netlists (module names, sizes, canvas, nets) and the cost weights. Why: a
    rerun resumes from ``OUT.plc.rl-checkpoint``, so one written for another netlist of the same size, or under
    other weights, was resumed silently (its best placement, scored on another scale, competing with the new)."""
    import hashlib

    h = hashlib.sha256(repr(tuple(float(v) for v in weights)).encode())
    for p in problems:
        c = p.canvas
        h.update("\n".join(p.names).encode())
        h.update(repr((c.width, c.height, c.columns, c.rows)).encode())
        for a in (p.kind, p.w, p.h, p.fixed, p.net_ptr, p.net_pins, p.net_weight):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:24]


def start_key(problem: ChipProblem, seed: int) -> str:
    """The start placement (``--init``) and the seed of a run, for its checkpoint's key: a leftover checkpoint
    took over a rerun given another start and seed, which went on from the old start's best (an outside check).
    Read before anything moves a macro: training leaves the problem at its episodes' placements."""
    import hashlib

    h = hashlib.sha256(repr(int(seed)).encode())
    for a in problem.copy_placement():
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


#: the largest policy a checkpoint may ask for (the default is hidden 32, layers 2)
POLICY_SIZE_LIMIT = {"hidden": 4096, "layers": 64}


def _best_damage(state: dict, problems: list[ChipProblem], weights) -> str:
    """What in a checkpoint's episode count and best placements no run writes ('' when nothing): a best placement
    must be finite, oriented, keep the fixed nodes and ports where they are, have its macros on the canvas and
    its hard macros apart (every episode's are), and cost what it records (recomputed)."""
    done, best = state.get("episodes"), state.get("best", [])
    if not is_count(done):
        return f"episodes {str(done)[:30]} is not a count"
    if not (isinstance(best, list) and len(best) <= len(problems)):
        return "best is not one entry per netlist"
    for i, entry in enumerate(best):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
            return f"best {i} is not a (proxy, placement) pair"
        v, pl = entry
        if pl is None:
            continue
        prob = problems[i]
        n = len(prob.names)
        if not (isinstance(pl, (list, tuple)) and len(pl) == 3 and all(
                isinstance(a, list) and len(a) == n for a in pl)):
            return f"best {i}'s placement is not x, y and orientation for its {n} nodes"
        try:
            x, y, o = (np.array(a, dtype=float) for a in pl)
        except (TypeError, ValueError):
            return f"best {i}'s placement holds what is not a number"
        if not (np.isfinite(x).all() and np.isfinite(y).all() and np.isin(o, np.arange(len(ORIENT_CODE))).all()):
            return f"best {i}'s placement holds a coordinate that is not finite or an orientation outside 0..7"
        start = prob.copy_placement()
        still = (prob.kind == KIND_PORT) | (prob.fixed != 0)
        if not (np.array_equal(x[still], start[0][still]) and np.array_equal(y[still], start[1][still])):
            return f"best {i}'s placement moves a fixed node or a port"
        prob.set_placement((x, y, o.astype(start[2].dtype)))
        try:
            w, h = prob.sizes()
            macro = np.flatnonzero((prob.kind == KIND_HARD) | (prob.kind == KIND_SOFT))
            off = [m for m in macro if not inside(prob, int(m), x[m], y[m], w[m], h[m])]
            legal, why = legality(prob)
            cost = proxy_cost(prob, weights).proxy
        finally:
            prob.set_placement(start)
        if off:
            return f"best {i}'s placement has macro {prob.names[off[0]]!r} off the canvas"
        if not legal:
            return f"best {i}'s placement is not legal: {why}"
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isclose(v, cost, rel_tol=1e-6)):
            return f"best {i}'s proxy {str(v)[:30]} is not its placement's ({cost:.6g})"
    return ""


def _save_checkpoint(path: str, policy, optim, state: dict) -> None:
    save_torch_checkpoint(path, {"policy": policy.state_dict(), "optim": optim.state_dict(), "config": policy.config,
                                 "state": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                           for k, v in state.items()}})


def train(problems: list[ChipProblem], *, policy=None, budget_s: float = 60.0, episodes: int | None = None,
          batch: int = 8, lr: float = 3e-3, seed: int = 0, weights=DEFAULT_WEIGHTS, checkpoint: str | None = None,
          progress: Progress | None = None, progress_every: float = 5.0, sub: int = DEFAULT_SUB,
          epochs: int = 2, episodes_of: list[Episode] | None = None, best_of: list | None = None,
          adapt_start: bool = True, stats_of: dict | None = None, refine: int = DEFAULT_REFINE,
          refine_density: float = DEFAULT_REFINE_DENSITY, refine_top: bool = DEFAULT_REFINE_TOP,
          offset_sweeps: int = DEFAULT_OFFSET_SWEEPS, episode_sweeps: int = 0,
          actions_of: list | None = None, polish_near: float = DEFAULT_POLISH_NEAR, start: str = "") -> tuple:
    """PPO on ``problems`` (pre-training: many netlists; fine-tuning: one) for ``budget_s`` seconds or
    ``episodes`` episodes. Returns ``(policy, best)`` where ``best[i]`` is the (proxy, placement) of the best
    episode on problem i. Resumes from ``checkpoint`` when it exists (saying so to ``progress``; the seconds
    the checkpointed run had spent count against ``budget_s``); writes it after every batch.
    ``episodes_of``: the problems' ``Episode`` objects when the caller already built them; ``best_of``: a list
    kept equal to ``best`` as it improves (what a caller still has after Ctrl-C). ``adapt_start``: episodes
    start with the soft macros where the best episode so far left them (``Episode.restart_from``);
    ``stats_of`` (a dict) receives the episode count after every batch. ``offset_sweeps`` > 0: a new best
    episode is polished (``Episode.polish``: its offsets re-decided with every macro known, soft macros settled)
    before it is kept, and is new when its own proxy beats the best episode's before polishing;
    ``episode_sweeps`` > 0: every episode's offsets are re-decided (at most that many sweeps) before its reward.
    ``polish_near`` > 0: a batch's best episode that is no record is polished too when its proxy less the
    mean gain of the polishes so far beats the best, while polishing has taken under that share of the time.
    ``actions_of`` (a list) receives each problem's best episode's actions (what ``Episode.sweep_offsets``
    needs). ``start``: ``start_key`` of the run's start and seed, part of the checkpoint's key."""
    import torch

    t0 = time.monotonic()  # before the optimizer: its first construction imports torch._dynamo (seconds)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    policy = policy if policy is not None else new_policy()
    optim = torch.optim.Adam(policy.parameters(), lr=lr)
    eps = episodes_of if episodes_of is not None else [Episode(p, weights, sub=sub, seed=seed, refine=refine,
                                                                          refine_density=refine_density,
                                                                          refine_top=refine_top,
                                                                          offset_sweeps=offset_sweeps)
                                                                  for p in problems]
    best: list[tuple[float, tuple | None]] = best_of if best_of is not None else []
    best[:] = [(math.inf, None)] * len(problems)
    acts: list = actions_of if actions_of is not None else []
    acts[:] = [None] * len(problems)
    done = 0
    key = run_key(problems, weights) + (f"|{start}" if start else "")
    prior_s: float | None = None  # seconds the resumed run had spent
    if checkpoint and os.path.exists(checkpoint):
        try:
            ck = load_torch_checkpoint(checkpoint, "a chip placement checkpoint")
            if ck["state"].get("key", key) != key:  # checkpoints written before the key: taken as they are
                raise UserInputError(f"{checkpoint}: a checkpoint of a run on another netlist or from another "
                                     "start (--init), seed or --weights; delete it (or write elsewhere with -o) to "
                                     "start over")
            config = ck["config"]
            if not (isinstance(config, dict) and set(config) <= {"hidden", "layers"} and all(
                    isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= POLICY_SIZE_LIMIT[k]
                    for k, v in config.items())):  # hidden=10^6 allocated gigabytes before torch refused
                raise UserInputError(f"{checkpoint}: a damaged chip placement checkpoint (its policy's config "
                                     f"{str(config)[:60]}); delete it to start over")
            policy = new_policy(**config)
            optim = torch.optim.Adam(policy.parameters(), lr=lr)
            why = module_state_damage(policy, ck["policy"]) or optimizer_state_damage(optim, ck["optim"]) or \
                _best_damage(ck["state"], problems, weights)
            if why:  # the best was written as the result: off-canvas macros reported legal, exit 0 (an outside check)
                raise UserInputError(f"{checkpoint}: a damaged chip placement checkpoint ({why}); delete it to start "
                                     "over")
            policy.load_state_dict(ck["policy"])
            optim.load_state_dict(ck["optim"])
            done = int(ck["state"]["episodes"])
            prior_s = float(ck["state"].get("elapsed_s", 0.0))  # written since this was counted; older: 0
            if not 0.0 <= prior_s < math.inf:
                raise ValueError(f"elapsed_s {prior_s}")
            for i, (v, pl) in enumerate(ck["state"].get("best", [])):
                if pl is not None and i < len(best):
                    best[i] = (v, tuple(np.array(a, dtype=arr.dtype) for a, arr in zip(pl, problems[i].copy_placement())))
                    saved = ck["state"].get("best_actions")
                    if saved and i < len(saved) and saved[i] is not None:
                        acts[i] = np.array(saved[i], dtype=np.int64)
                    if adapt_start:
                        eps[i].restart_from(best[i][1])
        except UserInputError:
            raise
        except Exception as e:  # noqa: BLE001 -- any unreadable checkpoint is the user's to remove
            raise UserInputError(f"{checkpoint}: cannot resume from this checkpoint ({type(e).__name__}: {e}); "
                                 "delete it to start over") from None
    if prior_s is not None:  # the time spent before the interruption counts: a rerun
        t0 -= prior_s  # finishes the budget rather than spending it all again
        if stats_of is not None:
            stats_of["resumed_s"] = round(prior_s, 1)  # rl_place's finale counts it too
        if progress is not None:
            progress({"resumed": checkpoint, "episodes": done, "elapsed": round(prior_s, 1)})
    next_report = time.monotonic() + progress_every
    rng = np.random.default_rng(seed + done)
    raw = [v for v, _ in best]  # the best episode's proxy before polishing: what a new episode must beat
    gains: list[float] = []  # what polishing took off each polished episode's proxy
    polish_s = [0.0, 0]  # seconds spent polishing, polishes
    try:
        while True:
            if episodes is not None and done >= episodes:
                break
            if episodes is None and time.monotonic() - t0 >= budget_s:
                break
            pick = rng.choice(len(eps), size=min(len(eps), 4), replace=False) if len(eps) > 4 else range(len(eps))
            ep_rolls = []
            for i in pick:
                rolls = rollouts(policy, eps[i], gen, batch, sweep=episode_sweeps)
                top = min(rolls, key=lambda ro: ro.proxy)
                if eps[i].offset_sweeps <= 0 and top.proxy < best[i][0]:  # as before the sweep existed
                    best[i] = eps[i].settle(top.placement)
                    acts[i] = top.actions.copy()
                    if adapt_start:
                        eps[i].restart_from(best[i][1])
                elif eps[i].offset_sweeps > 0 and (top.proxy < raw[i] or (
                        gains and top.proxy - float(np.mean(gains)) < best[i][0]
                        and polish_s[0] < polish_near * (time.monotonic() - t0))):
                    raw[i] = min(raw[i], top.proxy)
                    tp = time.monotonic()
                    v, pl = eps[i].polish(top.placement, top.actions)
                    polish_s[0] += time.monotonic() - tp
                    polish_s[1] += 1
                    gains.append(top.proxy - v)
                    if v < best[i][0]:
                        best[i] = (v, pl)
                        acts[i] = top.actions.copy()
                        if adapt_start:
                            eps[i].restart_from(pl)
                ep_rolls.append((eps[i], rolls))
                done += batch
            ppo_update(policy, optim, ep_rolls, epochs=epochs)
            if stats_of is not None:
                stats_of["episodes"] = done
                if polish_s[1]:
                    stats_of["polishes"], stats_of["polish_s"] = polish_s[1], round(polish_s[0], 1)
            if checkpoint:
                _save_checkpoint(checkpoint, policy, optim, {
                    "episodes": done, "key": key, "elapsed_s": time.monotonic() - t0,
                    "best": [(v, None if pl is None else [a.tolist() for a in pl]) for v, pl in best],
                    "best_actions": [None if a is None else a.tolist() for a in acts]})
            now = time.monotonic()
            if progress is not None and now >= next_report:
                mean = float(np.mean([ro.proxy for _, rs in ep_rolls for ro in rs]))
                progress({"elapsed": round(now - t0, 1), "episodes": done, "batch_mean_proxy": mean,
                          "best": min(v for v, _ in best)})
                next_report = now + progress_every
    except INTERRUPTS as e:
        if not is_interrupt(e):
            raise
        if progress is not None:
            progress({"interrupted": True, "episodes": done})
        raise
    return policy, best


def rl_place(problem: ChipProblem, *, weights=DEFAULT_WEIGHTS, budget_s: float = 60.0, seed: int = 0,
             progress: Progress | None = None, policy_path: str | None = None, checkpoint: str | None = None,
             finetune_share: float = 0.9, sub: int = DEFAULT_SUB, refine: int = DEFAULT_REFINE,
             refine_density: float = DEFAULT_REFINE_DENSITY,
             refine_top: bool = DEFAULT_REFINE_TOP, offset_sweeps: int = DEFAULT_OFFSET_SWEEPS,
             episode_sweeps: int = 0, polish_near: float = DEFAULT_POLISH_NEAR,
             descent_epochs: int = DEFAULT_DESCENT_EPOCHS, descent_k: int = 5,
             descent_swaps: bool = True) -> PlaceResult:
    """Fine-tune the pre-trained policy (``policy_path``, default the shipped one) on ``problem`` for a share of
    ``budget_s``, then keep the best of its episodes and of a greedy decode, and re-place the soft macros by
    force-directed rounds (best proxy kept). Ctrl-C stops with the best placement so far. ``sub``: candidate
    positions per grid cell and side (1: the cell centres). The time kept for that finale is ``1 -
    finetune_share`` of the budget but at most ``FINALE_RESERVE_S``: on Ariane133 the greedy decode and the
    force-directed rounds take 9-19 s (load 3), so a plain 10% left 40-50 s of a 600-s budget unused.
    ``offset_sweeps`` > 0: the sub-cell offsets of the best episode's and of the greedy decode's macros are
    re-decided with every macro known (``Episode.sweep_offsets``: the policy's positions kept, only the rule's
    offset within each re-chosen by the exact proxy cost), alternating with the force-directed rounds, both
    during training (``Episode.polish`` of each new best) and in the finale (4 x (a sweep, 10 rounds) instead
    of 40 rounds); ``episode_sweeps`` > 0: every training episode too (at most that many sweeps), before its
    reward. ``descent_epochs`` > 0: last, coordinate descent from that placement (``descent.coordinate_descent``,
    Circuit Training's ``cd_finetune``: each macro to its cheapest legal position within ``descent_k`` cells and
    orientation, swaps of identical macros with ``descent_swaps``), for at most that many epochs in the time kept
    for it (``DESCENT_SHARE`` of the budget, at most ``DESCENT_RESERVE_S``); its outcome is in the stats
    (``descent``), with the proxy before it."""
    check_options(descent_epochs, descent_k, descent_swaps)
    t0 = time.monotonic()
    begun = start_key(problem, seed)
    path = policy_path or DEFAULT_POLICY
    policy = load_policy(path) if os.path.exists(path) else new_policy()
    interrupted = False
    best_v, best_pl = math.inf, None
    start = problem.copy_placement()
    best: list = []
    best_acts: list = []
    best_ro_acts = None
    stats: dict = {"episodes": 0}
    descent_reserve = min(DESCENT_SHARE * budget_s, DESCENT_RESERVE_S) if descent_epochs > 0 and len(problem.hard) \
        else 0.0
    try:
        import torch

        ep = Episode(problem, weights, sub=sub, seed=seed, refine=refine, refine_density=refine_density,
                     refine_top=refine_top, offset_sweeps=offset_sweeps)
        reserve = min((1.0 - finetune_share) * budget_s, FINALE_RESERVE_S) + descent_reserve
        left = budget_s - reserve - (time.monotonic() - t0)
        policy, best = train([problem], policy=policy, budget_s=max(left, 0.0), seed=seed, weights=weights,
                             checkpoint=checkpoint, progress=progress, episodes_of=[ep], best_of=best,
                             stats_of=stats, episode_sweeps=episode_sweeps, actions_of=best_acts,
                             polish_near=polish_near, start=begun)
        ro = rollout(policy, ep, torch.Generator().manual_seed(seed), greedy=True, sweep=ep.offset_sweeps)
        v, pl = (ep.polish(ro.placement, ro.actions) if ep.offset_sweeps > 0 else (ro.proxy, ro.placement))
        if v < best_v:
            best_v, best_pl, best_ro_acts = v, pl, ro.actions
    except INTERRUPTS as e:
        if not is_interrupt(e):
            raise
        interrupted = True
    if best and best[0][1] is not None and best[0][0] < best_v:
        best_v, best_pl = best[0]
        best_ro_acts = best_acts[0] if best_acts else None
    problem.set_placement(best_pl if best_pl is not None else start)
    if len(problem.hard) and not legality(problem)[0]:
        # no legal episode (a macro found no legal position: a tight canvas, an interrupted first batch): the
        # legalizer's placement, as fd and sa give, rather than an illegal one; the offset sweep below keeps macros
        # in the policy's cells, which they left
        legalize(problem)
        best_ro_acts = None
    cost = ProxyCost(problem, weights)
    # the finale and the descent share what the training left, of the budget less what a resumed run had spent;
    # the finale stops where the descent's own reserve begins (on a loaded machine it took all of it, and the
    # descent ran no epoch: the suite saw it)
    deadline = t0 + budget_s - stats.get("resumed_s", 0.0)
    finale_deadline = deadline - (descent_reserve if legality(problem)[0] else 0.0)  # no descent from illegal
    if not interrupted and problem.soft.size:
        kept = problem.copy_placement()  # the last finished step's placement: what Ctrl-C leaves
        try:
            if offset_sweeps > 0 and best_ro_acts is not None and best_pl is not None:
                for _ in range(4):  # the sweep and the rounds alternate (Episode.polish), same 40 rounds in all
                    if time.monotonic() >= finale_deadline:
                        break
                    ep.sweep_offsets(best_ro_acts)
                    ForceDirected(problem).run(cost, rounds=10, seed=seed,
                                               should_stop=lambda: time.monotonic() >= finale_deadline)
                    kept = problem.copy_placement()
            else:
                ForceDirected(problem).run(cost, rounds=40, seed=seed,
                                           should_stop=lambda: time.monotonic() >= finale_deadline)
        except INTERRUPTS as e:  # the last finished step's placement, not a half-done sweep
            if not is_interrupt(e):
                raise
            problem.set_placement(kept)
            interrupted = True
    if not interrupted and descent_epochs > 0 and legality(problem)[0]:
        try:
            stats["descent"] = coordinate_descent(problem, cost, k=descent_k, refine=max(refine, 1),
                                                  epochs=descent_epochs, swaps=descent_swaps, seed=seed,
                                                  should_stop=lambda: time.monotonic() >= deadline,
                                                  progress=progress)
        except INTERRUPTS as e:
            if not is_interrupt(e):
                raise
            interrupted = True
    report = cost.evaluate()
    # a legal start that costs less than what the run ends with is kept, as sa keeps a start its global placement
    # does not beat and fd its best round: with a hard macro fixed, rl ended at 0.4863 from a start of 0.4827
    # (the soft macros' places its episodes and finale chose; an outside check)
    final = problem.copy_placement()
    problem.set_placement(start)
    first = cost.evaluate() if legality(problem)[0] else None
    if first is not None and first.proxy < report.proxy:
        if progress:
            progress(f"chip place: the start ({first.proxy:.4f}) costs less than the placement found "
                     f"({report.proxy:.4f}): kept")
        report, stats["kept_start"] = first, True
    else:
        problem.set_placement(final)
    if interrupted and checkpoint and legality(problem)[0]:
        _keep_best_in_checkpoint(checkpoint, report.proxy, problem.copy_placement())
    return PlaceResult(report, legality(problem)[0], time.monotonic() - t0, "rl", interrupted,
                       {"best_episode": best_v, **stats})


def _keep_best_in_checkpoint(checkpoint: str, proxy: float, placement: tuple) -> None:
    """After Ctrl-C in the finale or the descent, what they reached becomes the checkpoint's best placement when
    it is better: the checkpoint is written by training only, so the rerun started from training's best and
    wrote a worse placement over the better one the interrupted run had written (an outside check)."""
    if not os.path.exists(checkpoint):
        return
    ck = load_torch_checkpoint(checkpoint, "a chip placement checkpoint")
    best = ck["state"].get("best") or []
    if best and best[0][1] is not None and not proxy < best[0][0]:
        return
    ck["state"]["best"] = [(float(proxy), [a.tolist() for a in placement])] + list(best[1:])
    acts = ck["state"].get("best_actions") or [None]
    ck["state"]["best_actions"] = [None] + list(acts[1:])  # its actions are not the policy's: no offset sweep
    save_torch_checkpoint(checkpoint, ck)


def pretrain(problems: list[ChipProblem], out: str | os.PathLike, *, budget_s: float = 300.0, seed: int = 0,
             checkpoint: str | None = None, progress: Progress | None = None, lr: float = 3e-4) -> dict:
    """Pre-train a policy on several netlists (the tiny ones and generated ones) and save it to ``out``. Why a
    small learning rate: at 3e-3 the policy pre-trained for 300 s fine-tuned worse on Ariane133 than the
    untrained one (stuck at 0.707 against 0.682 after 190 s from a vacuous start): the tiny and generated
    netlists are unlike it, and what the scorer learned there overrode the HPWL/density prior. At 3e-4: 0.691
    after 112 s, as the untrained policy (0.692 after 115 s)."""
    policy, best = train(problems, budget_s=budget_s, seed=seed, checkpoint=checkpoint, progress=progress, lr=lr)
    save_policy(policy, out)
    return {"netlists": len(problems), "best": [v for v, _ in best]}
