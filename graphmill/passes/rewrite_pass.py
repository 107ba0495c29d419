"""A pass made of rewrite rules: every fusion is a list of ``Rule``s, not a traversal.

Rules whose exactness the context does not allow are skipped (approximate rules
run only when the schedule asks: ``allow=[approximate]`` on the pass, or
``--allow approximate`` on the command line). ``disable=[rule, ...]`` turns named
rules off (MLIR's ``disable-patterns``): a rule can be right in general and wrong
for one backend, e.g. merge-ops' activation hoist saves nodes but takes the Relu
away from a Conv that ONNX Runtime would fuse it into.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from graphmill.ir import Graph
from graphmill.ir.rewrite import NestedOutputs, Op, Pattern, Rule
from graphmill.util.errors import GraphmillError
from graphmill.util.suggest import did_you_mean

from .base import EXACTNESS, Option, Pass, PassContext, PassResult


class RewritePass(Pass):
    rules: ClassVar[tuple[Rule, ...]] = ()
    options: ClassVar[tuple[Option, ...]] = (
        Option("allow", list, [], "extra exactness levels to allow for this pass (e.g. [approximate])",
               choices=EXACTNESS),
        Option("max_rounds", int, 16, "sweeps over the graph before giving up on reaching a fixpoint", min=1),
        Option("disable", list, [], "rules of this pass not to run, by name (listed below)"),
    )

    def __init_subclass__(cls, **kwargs) -> None:
        """Each pass's ``disable`` accepts exactly its own rule names (checked when a schedule is parsed), and a pass
        that does not declare its exactness has its least exact rule's (``graphmill passes`` listed a pass of one
        approximate rule as exact: an outside check)."""
        super().__init_subclass__(**kwargs)
        rules = cls.__dict__.get("rules", cls.rules)
        if "exactness" not in cls.__dict__ and rules:
            cls.exactness = max((r.exactness for r in rules), key=EXACTNESS.index)
        names = tuple(r.name for r in rules)
        cls.options = tuple(dataclasses.replace(o, choices=names) if o.name == "disable" else o for o in cls.options)

    def active_rules(self, ctx: PassContext) -> list[Rule]:
        allowed = set(ctx.allow) | set(self.opts.get("allow", []))
        disabled = set(self.opts.get("disable", []))
        return [r for r in self.rules if r.exactness in allowed and r.name not in disabled]

    def run(self, graph: Graph, ctx: PassContext) -> PassResult:
        rules = self.active_rules(ctx)
        result = PassResult()
        disabled = set(self.opts.get("disable", []))
        active = {r.name for r in rules}  # by name: a pass may hand out a rule configured by its options
        allowed = set(ctx.allow) | set(self.opts.get("allow", []))
        present = {n.op_type for g in graph.all_graphs() for n in g.nodes}
        for r in self.rules:  # a note only for a rule that could have matched: its pattern's ops are present
            if r.name in active or not needs_only(r.pattern, present):
                continue
            if r.name in disabled:
                result.notes.append(f"rule {r.name!r} disabled by the schedule")
            elif r.exactness not in allowed:
                result.notes.append(f"rule {r.name!r} ({r.exactness}) skipped: not allowed by this schedule")
            # else: turned off by one of the pass's own options (fuse-ort-contrib's skip_layernorm=false, which
            # the ort schedule sets on purpose): the option says so already, a note on every run is noise
        rounds = self.opts.get("max_rounds", 16)
        for _ in range(rounds):
            fired: dict[str, None] = {}  # the rules that fired in this sweep, in order
            for g in list(graph.all_graphs()):
                nested = NestedOutputs(g)
                for node in list(g.nodes):
                    if node.graph is not g:
                        continue  # removed by an earlier rewrite in this sweep
                    for rule in rules:
                        if rule.pattern.types and node.op_type not in rule.pattern.types:
                            continue
                        if _rewrite(rule, g, node, nested):
                            result.stats[rule.name] = result.stats.get(rule.name, 0) + 1
                            fired[rule.name] = None
                            break
            if not fired:
                break
            result.changed = True
        else:  # it stopped silently with rules still firing (a rule that undoes another, or one that always fires)
            result.notes.append(f"no fixpoint after max_rounds={rounds} sweeps: rule(s) {', '.join(fired)} still "
                                "fired in the last; the graph is as the last sweep left it")
        return result


class RuleCrash(RuntimeError):
    """A rule's check or replacement raised: the rule and the node are named (a pass with several rules said only
    "pass 'p' failed: KeyError: 'x'"; an outside check)."""


def _rewrite(rule: Rule, graph: Graph, node, nested: NestedOutputs) -> bool:
    try:
        return rule.try_rewrite(graph, node, nested)
    except GraphmillError:  # a refusal meant for the user (a model too large to fold, ...) keeps its type
        raise
    except Exception as e:
        raise RuleCrash(f"rule {rule.name!r} at {node.describe()}: {type(e).__name__}: {e}") from e


def needs_only(pattern: Pattern, present: set[str]) -> bool:
    """Whether every op ``pattern`` requires is among ``present`` op types (optional parts aside):
    when not, the rule could not have matched, and saying it was skipped is noise."""
    if isinstance(pattern, Op):
        return bool(set(pattern.types) & present) and all(needs_only(p, present) for p in pattern.inputs)
    return True


def all_rules() -> dict[str, tuple[Rule, str]]:
    """Every rule of every registered RewritePass: rule name -> (rule, pass name)."""
    from .base import registered_passes

    found: dict[str, tuple[Rule, str]] = {}
    for name, cls in registered_passes().items():
        if isinstance(cls, type) and issubclass(cls, RewritePass):
            for r in cls.rules:
                found.setdefault(r.name, (r, name))
    return found


def find_rule(name: str) -> tuple[Rule, str]:
    from graphmill.ir import UserInputError

    from .base import registered_passes

    rules = all_rules()
    if name not in rules:
        cls = registered_passes().get(name)
        if cls is not None:  # a pass's name, the first thing a user types: "did you mean 'fused-conv'" (a new user)
            own = [r.name for r in cls.rules] if isinstance(cls, type) and issubclass(cls, RewritePass) else []
            raise UserInputError(f"{name!r} is a pass, not a rewrite rule; " + (
                f"its rules: {', '.join(own)}" if own else "it has no rewrite rules to explain"))
        raise UserInputError(f"unknown rewrite rule {name!r}{did_you_mean(name, rules)}; `graphmill passes` lists "
                             f"the {len(rules)} rules with their passes (a rule of your own: name its file with "
                             "--load-passes)")
    return rules[name]
