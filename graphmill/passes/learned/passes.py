"""The learned passes: ``learned-place``, ``learned-fuse``, ``learned-schedule`` and ``learned-optimize`` (all
three decided jointly by the policy, refining the best baseline for a few rounds of one forward pass each:
``infer.refine``). They need a device cost model on the PassContext (the
placement's ``PlacementCostModel``, which also costs fusion groups) and load the policy file (default: the one
shipped in ``data/``; torch is imported only when a learned pass runs).

What they write (and ``decisions_from_graph`` / ``replay`` read back, so the simulator replays it):

* ``node.meta["device"]``: every node's device (constants: their first reader's, as ``place`` writes it);
* ``node.meta["fusion_group"]``: the compute op's fusion group (an int; ops sharing one run as one kernel);
* ``node.meta["priority"]``: the op's scheduling priority (least runs first among a device's ready ops);
* ``graph.meta["learned"]``: ``{"pass", "makespan", "units", "devices", "order": {device name: [op names in
  the order they run]}, "groups": [[op names]] (groups of two or more), "refused": [reasons]}``.

A pass deciding only some of the three keeps the others from the graph: the devices, groups and priorities an
earlier pass wrote, else one device (the fastest), no fusion and the graph's order. A fusion the policy proposes
across the kept devices is dropped. The refinement starts from the best baseline (below, for a pass deciding
some of the three) and keeps the best state it simulated: per round (option ``rounds``, default 4) the policy's
greedy decisions, its k most probable device changes (k = 1, 2, 4, 8, 16, 32), its k most wanted chain units
moved whole (k = 1, 2, 4, 8, 16) and ``samples`` draws (default 0);
so a learned pass is never worse than the best baseline
(``from_sample`` says who won: the index of the winning candidate, -1 the start state). A pass deciding some of
the three starts from the faster of the hint's decisions for its parts and the best of its parts' baselines with
the rest kept (``baselines.best_baseline(parts=, keep=)``), and is never worse than either; every pass starts
from the graph's own decisions instead where they are faster (an earlier pass's result). ``learned-optimize``
then takes block-coordinate steps (``part_steps``): each part's best baseline with the other two decisions of its
result kept, refined again by the policy where it is faster; and does the same (refinement, then part steps) from
the best combination under each of the other two schedule baselines (``baselines.best_per_schedule``), keeping
the fastest result.
"""

from __future__ import annotations

import numpy as np

from graphmill.ir import Graph, UserInputError
from graphmill.passes.base import Option, Pass, PassContext, PassResult, register_pass
from graphmill.passes.placement.place import apply_placement, check_fits
from graphmill.passes.placement.problem import build_problem, cost_model_of, infer_open_shapes, replay_record

from .baselines import best_baseline, best_per_schedule
from .env import ALL_PARTS, Decisions, JointProblem, Outcome, combine

__all__ = ["LearnedPlace", "LearnedFuse", "LearnedSchedule", "LearnedOptimize", "decisions_from_graph", "replay",
           "apply_decisions", "run_learned", "PARTS", "combine", "policy_for", "replay_tables"]

PARTS = {"learned-place": {"place"}, "learned-fuse": {"fuse"}, "learned-schedule": {"schedule"},
         "learned-optimize": {"place", "fuse", "schedule"}}

_POLICIES: dict = {}


def policy_for(path: str = ""):
    """The policy of ``path`` (empty: the shipped one), loaded once per process."""
    from .policy import load_policy

    key = path or ""
    if key not in _POLICIES:
        _POLICIES[key] = load_policy(path or None)[0]
    return _POLICIES[key]


def decisions_from_graph(graph: Graph, jp: JointProblem) -> Decisions:
    """The decisions the graph's metas hold (module docstring), defaults where a meta is missing."""
    nodes = jp.prob.nodes
    fastest = int(np.argmin(jp.prob.op_time.sum(0)))
    dev = np.array([int(n.meta.get("device", fastest)) if 0 <= int(n.meta.get("device", fastest)) < jp.devices
                    else fastest for n in nodes], np.int64)
    grp = [n.meta.get("fusion_group") for n in nodes]
    fp = jp.fuse_producer
    fuse = np.array([fp[i] >= 0 and grp[i] is not None and grp[int(fp[i])] == grp[i] for i in range(jp.n)], bool)
    prio = np.array([float(n.meta.get("priority", i)) for i, n in enumerate(nodes)], np.float64)
    return Decisions(dev, fuse, prio)


def apply_decisions(graph: Graph, jp: JointProblem, dec: Decisions, out: Outcome, name: str) -> None:
    """Write the metas of the module docstring."""
    apply_placement(graph, jp.prob, [int(d) for d in out.device])
    for i, node in enumerate(jp.prob.nodes):
        node.meta["fusion_group"] = int(out.group[i])
        node.meta["priority"] = float(dec.priority[i])
    names = jp.prob.names
    graph.meta["learned"] = {
        "pass": name, "makespan": out.makespan, "units": jp.prob.units, "devices": list(jp.prob.device_names),
        "order": {jp.prob.device_names[d]: [names[i] for i in ops] for d, ops in enumerate(out.order())},
        "groups": [[names[i] for i in g] for g in out.groups if len(g) > 1], "refused": list(out.refused)}
    if any(n.op_type == "Backward" and n.domain == "graphmill" for n in jp.prob.nodes):
        # a training step (placement.training_graph): its backward ops are not in the model that is saved, so
        # their decisions (and the forward ops') travel here for ``replay`` to rebuild the step
        graph.meta["learned"]["decisions"] = {names[i]: [int(out.device[i]), int(out.group[i]), float(dec.priority[i])]
                                              for i in range(jp.n)}


def replay_tables(jp: JointProblem, out: Outcome) -> dict:
    """What re-simulating ``out`` needs besides the decisions, in the placement report's schema (README, "Device
    placement", "Report"): ``op_time`` {op: [time on each device]} (ops in the graph's order), ``values``,
    ``link``, and ``group_time``: the time of each fusion group of two or more ops on its device (the cost
    model's ``group_cost``, one kernel), aligned with the groups of ``out`` listed in its order. Without them
    a report's decisions could be replayed only with graphmill's own cost model."""
    from graphmill.passes.placement.place import problem_tables

    tables = problem_tables(jp.prob)
    groups = [jp.group_cost(tuple(g), int(out.device[g[0]]))[0] for g in out.groups if len(g) > 1]
    return {"op_time": tables["op_time"], "group_time": groups, "values": tables["values"], "link": tables["link"],
            **{k: tables[k] for k in ("uncosted",) if k in tables}}


def run_learned(graph: Graph, cost, name: str, *, policy_path: str = "", samples: int = 0, seed: int = 0,
                policy=None, hint: np.ndarray | None = None, guard: bool = True,
                rounds: int | None = None, seen: set[bytes] | None = None
                ) -> tuple[JointProblem, Decisions, Outcome, dict]:
    """What the pass ``name`` does (module docstring); returns (problem, decisions, outcome, stats). ``hint``:
    the placement the policy's features start from (default: the graph's own when it keeps the devices, else
    the best baseline's). The policy refines the start state (the best baseline for ``learned-optimize``; for a
    pass deciding some of the three, the faster of the hint's decisions for its parts and the best of its parts'
    baselines, the graph's decisions for the others; either way the graph's own decisions, all three, where they
    are faster: an earlier pass's result is not undone) for ``rounds`` rounds (``infer.refine``: one forward pass
    each; its greedy decisions, its k most probable device changes for k in ``infer.TOP``, its k most wanted chain
    units moved whole for k in ``infer.UNIT_TOP`` and ``samples`` draws simulated), keeping the best
    state; so the pass is never worse than its start, nor than the graph it was given (``guard`` is kept for
    callers and changes nothing). ``learned-optimize`` then takes ``part_steps`` and refines likewise from
    the best combination under each other schedule baseline (module docstring; their 36 baseline simulations are
    the best baseline's, not counted).
    ``stats["candidates"]``: the step time of every candidate simulated, in order (inf when invalid);
    ``from_sample``: the winner's index among them (-1: the start state); ``held_to``: the start's name and
    step time (module docstring). ``seen``: ``infer.refine``'s set of
    simulated states, filled in place (a caller that fine-tunes next passes it on: ``fine_tune`` proposes none
    of them again, PPO's draws aside)."""
    from .features import node_features
    from .infer import ROUNDS, TOP, UNIT_TOP, refine, state_key

    parts = PARTS[name]
    prob = build_problem(graph, cost)
    check_fits(prob, graph.name)  # as place does: a graph no decision can hold is refused, not searched
    jp = JointProblem(prob, cost)
    base = decisions_from_graph(graph, jp)
    if hint is None and "place" not in parts and any("device" in n.meta for n in jp.prob.nodes):
        hint = base.device
    pol = policy if policy is not None else policy_for(policy_path)
    obs = node_features(jp, hint=hint)
    start = None
    # the graph as it is: an earlier pass's decisions can beat every baseline, and a pass appended to a schedule
    # must not undo them (learned-fuse after learned-optimize ended 8% slower than the graph it was given: a review)
    own = (base, jp.evaluate(base), "kept+kept+kept (the graph's own decisions)")
    if parts != ALL_PARTS:  # held to its parts' best baseline, the rest as the graph holds them (best_baseline)
        held = best_baseline(jp, parts=frozenset(parts), keep=base)
        from_hint = combine(obs["decisions"], base, parts, jp)
        # named as best_baseline names its kept parts: the hint's choice for the pass's parts only (a review)
        hint_name = "+".join(n if p in parts else "kept" for n, p in
                             zip(obs["hint_name"].split("+"), ("place", "fuse", "schedule")))
        hint_name += f" (the best combination's {'/'.join(sorted(parts))})"
        start = min([(from_hint, jp.evaluate(from_hint), hint_name), (held.decisions, held.outcome, held.name), own],
                    key=lambda c: (not c[1].valid, c[1].makespan))
    else:
        start = min([(obs["decisions"], obs["outcome"], obs["hint_name"]), own],
                    key=lambda c: (not c[1].valid, c[1].makespan))
    held_to = {"name": start[2], "makespan": start[1].makespan}
    start = start[:2]
    rounds = ROUNDS if rounds is None else rounds
    seen = set() if seen is None else seen
    transform = lambda d: combine(d, base, parts, jp)  # noqa: E731
    dec, out, src, times = refine(pol, jp, obs, rounds=rounds, samples=samples, seed=seed, transform=transform,
                                  top=TOP, units=UNIT_TOP, seen=seen, start=start)
    if parts == ALL_PARTS:
        dec, out, src = part_steps(pol, jp, obs, dec, out, src, rounds=rounds, samples=samples, seed=seed, seen=seen,
                                   times=times)
        # the other orders' best combinations, of the baselines the hint is the best of (their seed: the hint's)
        for other in best_per_schedule(jp).values():
            if state_key(other.decisions) in seen:
                continue  # the hint's own, or a state the refinement reached
            d2, o2, s2, more = refine(pol, jp, obs, rounds=rounds, samples=samples, seed=seed, transform=transform,
                                      top=TOP, units=UNIT_TOP, seen=seen, start=(other.decisions, other.outcome))
            times.extend(more)
            d2, o2, s2 = part_steps(pol, jp, obs, d2, o2, s2, rounds=rounds, samples=samples, seed=seed, seen=seen,
                                    times=times)
            if o2.valid and (not out.valid or o2.makespan < out.makespan):
                dec, out, src = d2, o2, (other.name if s2 == "hint" else f"{s2} from {other.name}")
    k = -1
    if src != "hint":
        k = next((i for i, t in enumerate(times) if t == out.makespan), -1)
    stats = {"makespan": out.makespan, "fusion_groups": sum(len(g) > 1 for g in out.groups),
             "refused_fusions": len(out.refused), "from_sample": k, "candidates": times, "held_to": held_to}
    return jp, dec, out, stats


#: at most this many sweeps of ``part_steps`` over the three parts (each ends the sweeps when none improves)
PART_SWEEPS = 3


def part_steps(pol, jp: JointProblem, obs: dict, dec: Decisions, out: Outcome, src: str, *, rounds: int,
               samples: int, seed: int, seen: set[bytes], times: list[float]) -> tuple[Decisions, Outcome, str]:
    """Block-coordinate steps after the joint refinement (``learned-optimize``): for each part in turn, the best
    of that part's baselines with the other two decisions kept (``best_baseline(parts=, keep=)``); where it beats
    the state, the policy refines again from it. Why: the joint refinement changes a few ops at a time from the
    best baseline combination, and a combination a part's baselines make only on another part's refined
    decisions (a fusion baseline on the devices the policy moved) was out of its reach, so running the three
    passes one after another ended up to 6% faster on an independently written Inception-style model (2 devices;
    an outside check); with these steps the joint pass ended 15% faster than they did there. At most
    ``PART_SWEEPS`` sweeps, until one improves nothing; every state simulated is appended to ``times``. Never
    worse than its start (only an improvement is taken)."""
    from .infer import TOP, UNIT_TOP, refine

    for _ in range(PART_SWEEPS):
        improved = False
        for part in ("place", "fuse", "schedule"):
            cand = best_baseline(jp, parts=frozenset({part}), keep=dec)
            times.extend(cand.table.values())
            if not (cand.outcome.valid and cand.outcome.makespan < out.makespan):
                continue
            dec, out, inner, more = refine(pol, jp, obs, rounds=rounds, samples=samples, seed=seed, top=TOP,
                                           units=UNIT_TOP, seen=seen, start=(cand.decisions, cand.outcome))
            times.extend(more)
            src, improved = (f"{part} baseline {cand.name}" if inner == "hint" else inner), True
        if not improved:
            break
    return dec, out, src


def replay(graph: Graph, cost) -> Outcome:
    """Re-simulate the decisions the graph's metas hold on ``cost``'s devices (``replay_state``'s outcome)."""
    return replay_state(graph, cost)[2]


def replay_state(graph: Graph, cost) -> tuple[JointProblem, Decisions, Outcome]:
    """The problem, the decisions the graph's metas hold and their simulated outcome on ``cost``'s devices; a
    training step's (``graph.meta["learned"]["training"]``) on the training graph rebuilt from ``graph``, with
    the decisions of every op its meta's ``decisions`` table holds (``apply_decisions``), not on the forward
    graph alone."""
    table = (graph.meta.get("learned") or {}).get("decisions")
    if (graph.meta.get("learned") or {}).get("training") and isinstance(table, dict):
        from graphmill.passes.placement.training import training_step

        graph = training_step(graph, table, ("device", "fusion_group", "priority"))
    jp = JointProblem(build_problem(graph, cost), cost)
    dec = decisions_from_graph(graph, jp)
    return jp, dec, jp.evaluate(dec)


def decisions_report(jp: JointProblem, dec: Decisions, out: Outcome) -> dict:
    """The decisions and their outcome in the learned passes' report schema (README, "Learned passes"): what a
    re-simulation outside graphmill needs, ``replay_tables`` included; ``api.learned_optimize`` and the
    ``learned`` key of ``optimize``'s report give this."""
    names = jp.prob.names
    return {"devices": list(jp.prob.device_names), "units": jp.prob.units, "makespan": out.makespan,
            "placement": {names[i]: int(d) for i, d in enumerate(out.device)},
            "fusion_groups": [[names[i] for i in g] for g in out.groups if len(g) > 1],
            "priority": {names[i]: float(x) for i, x in enumerate(dec.priority)},
            "order": {jp.prob.device_names[d]: [names[i] for i in ops] for d, ops in enumerate(out.order())},
            "refused": list(out.refused),
            "memory": {"capacity": [float(c) for c in jp.prob.capacity], "peak": [float(x) for x in out.peak]},
            **replay_tables(jp, out)}


class _Learned(Pass):
    options = (
        Option("policy", str, "", "policy file (.npz with its .json); empty: the shipped pretrained policy"),
        Option("samples", int, 0, "policy draws simulated per refinement round besides its greedy, top-k and unit "
               "decisions", min=0, max=10000),
        Option("rounds", int, 4, "refinement rounds (one forward pass of the policy each)", min=1, max=100),
        Option("guard", bool, True, "kept for old schedules: refinement never returns worse than its start"),
    )
    preserves = "all"

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        cost = cost_model_of(ctx, f"the {self.name} pass")
        infer_open_shapes(graph, ctx, f"the {self.name} pass")
        jp, dec, out, stats = run_learned(graph, cost, self.name, policy_path=self.opts["policy"],
                                          samples=self.opts["samples"], seed=ctx.seed, rounds=self.opts["rounds"])
        who = ("the start state's decisions: no refinement improved it" if stats["from_sample"] < 0
               else "the policy's decisions")
        notes = [f"simulated step time {out.makespan:,.0f} {jp.prob.units} on {jp.devices} devices, "
                 f"{stats['fusion_groups']} fusion group(s) ({who})"]
        if not out.valid:  # as place refuses an invalid placement: nothing is written
            d, excess = out.over
            raise UserInputError(f"no decisions found within memory: device {jp.prob.device_names[d]} exceeds its "
                                 f"memory by {excess:,.0f} bytes (more devices or --memory)")
        apply_decisions(graph, jp, dec, out, self.name)
        graph.meta["learned"].update(replay_record(cost))  # a saved model replays however the pass was run
        stats.pop("candidates")  # a pass's stats are numbers (the manager sums them)
        held = stats.pop("held_to")
        notes.append(f"held to {held['name']} ({held['makespan']:,.0f} {jp.prob.units}): never worse than it")
        return PassResult(changed=True, stats=stats, notes=notes)


@register_pass
class LearnedPlace(_Learned):
    """Place every op on a device with the learned graph policy (writes node.meta["device"]; needs a device cost
    model on the context)."""

    name = "learned-place"


@register_pass
class LearnedFuse(_Learned):
    """Choose fusion groups with the learned graph policy (node.meta["fusion_group"]; groups must fit the on-chip
    buffers; the devices already written are kept)."""

    name = "learned-fuse"


@register_pass
class LearnedSchedule(_Learned):
    """Choose the order of ready ops on each device with the learned graph policy (node.meta["priority"])."""

    name = "learned-schedule"


@register_pass
class LearnedOptimize(_Learned):
    """Placement, fusion and scheduling decided jointly by the learned graph policy (all three metas)."""

    name = "learned-optimize"
