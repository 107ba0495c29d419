"""The pass manager, its instruments, analyses and reproducers.

References: ONNX Runtime (the numerics check), graphmill's verifier, and the schedules'
own structure (how many times a pass must run is computed from the schedule by hand).
Toy passes registered here carry a ``test-`` prefix.
"""

from __future__ import annotations

import logging

import io
import re
import os

import numpy as np
import pytest

import graphmill
from graphmill.backends import onnxruntime as ortb
from graphmill.ir import GraphmillError, Node, Tensor, TensorType, Value
from graphmill.ir.builder import GraphBuilder
from graphmill.ir.rewrite import APPROXIMATE, EXACT, Op, Rule, Var
from graphmill.optimization import ReproducerError, optimize
from graphmill.passes import (
    Analysis,
    ChangeClaimCheck,
    Option,
    Pass,
    PassContext,
    PassFailure,
    PassManager,
    PassResult,
    PrintIR,
    TimePasses,
    pass_class,
    register_analysis,
    register_pass,
)
from graphmill.passes.rewrite_pass import RewritePass
from graphmill.util.errors import UserInputError

CALLS: dict[str, int] = {}


def relu_chain(n: int = 3):
    b = GraphBuilder("chain")
    x = b.input("x", "float32", ["N", 4])
    y = x
    for _ in range(n):
        y = b.Relu(y)
    b.output(y, "y")
    return b.build()


def drop_one_relu_pair(graph) -> bool:
    """Bypass the first Relu feeding a Relu (Relu(Relu(x)) == Relu(x)); whether there was one."""
    for n in graph.nodes:
        if n.op_type == "Relu" and n.inputs[0].producer is not None and n.inputs[0].producer.op_type == "Relu":
            inner = n.inputs[0].producer
            n.set_input(0, inner.inputs[0])
            graph.remove_node(inner)
            return True
    return False


@register_pass
class DropOneRelu(Pass):
    """Test pass: bypass one Relu feeding a Relu per run (Relu(Relu(x)) == Relu(x)), so fixpoints iterate."""

    name = "test-drop-one-relu"
    preserves = frozenset({"test-count"})

    def run(self, graph, ctx):
        CALLS[self.name] = CALLS.get(self.name, 0) + 1
        if drop_one_relu_pair(graph):
            return PassResult(True, {"removed": 1})
        return PassResult(False)


@register_pass
class Noop(Pass):
    """Test pass: changes nothing."""

    name = "test-noop"
    options = (Option("level", int, 1, "unused", min=0),)

    def run(self, graph, ctx):
        CALLS[self.name] = CALLS.get(self.name, 0) + 1
        ctx.analysis("test-count", graph)
        return PassResult(False)


@register_pass
class TouchNothingButSayChanged(Pass):
    """Test pass: claims a change and preserves no analysis."""

    name = "test-claim-change"

    def run(self, graph, ctx):
        return PassResult(True)


@register_analysis
class CountNodes(Analysis):
    name = "test-count"
    # the caching tests have test-drop-one-relu declare it preserved while removing a node, to see it kept cached;
    # that claim is false, which --verify-each would report (test_a_false_preserved_claim_is_named)
    verifiable = False

    def compute(self, graph, ctx):
        return len(graph)


@register_pass
class BreakNumbers(Pass):
    """Test pass: replaces Relu by Neg -- wrong on purpose."""

    name = "test-break-numbers"

    def run(self, graph, ctx):
        for n in graph.nodes:
            if n.op_type == "Relu":
                n.op_type = "Neg"
                return PassResult(True)
        return PassResult(False)


@register_pass
class WidenInput(Pass):
    """Test pass: another network on purpose, as compound-scale makes one: the input's 4 features become 6."""

    name = "test-widen-input"
    resizes_interface = True

    def run(self, graph, ctx):
        x = graph.inputs[0]
        x.type = TensorType(x.type.dtype, ["N", 6])
        for n in graph.nodes:
            for v in n.outputs:
                v.type = TensorType(x.type.dtype, ["N", 6])
        return PassResult(True)


@register_pass
class SpecializeBatch(Pass):
    """Test pass: silently turns the symbolic batch of the output into 1."""

    name = "test-specialize-batch"

    def run(self, graph, ctx):
        out = graph.outputs[0]
        out.type = out.type.with_shape([1] + list(out.type.shape[1:]))
        return PassResult(True)


@register_pass
class ForgetOutputShape(Pass):
    """Test pass: the graph output's type keeps its element type and loses its shape."""

    name = "test-forget-output-shape"

    def run(self, graph, ctx):
        out = graph.outputs[0]
        out.type = TensorType(out.type.dtype, None)
        return PassResult(True)


@register_pass
class ForgetOutputDim(Pass):
    """Test pass: the graph output's static last dimension becomes unknown."""

    name = "test-forget-output-dim"

    def run(self, graph, ctx):
        out = graph.outputs[0]
        out.type = out.type.with_shape(list(out.type.shape[:-1]) + [None])
        return PassResult(True)


@register_pass
class SwallowOutput(Pass):
    """Test pass: makes the graph output an undefined value."""

    name = "test-swallow-output"

    def run(self, graph, ctx):
        graph.outputs[0] = Value("ghost", TensorType(1, ["N", 4]))
        return PassResult(True)


@register_pass
class RenameOutput(Pass):
    """Test pass: renames the graph output (type and value unchanged)."""

    name = "test-rename-output"

    def run(self, graph, ctx):
        graph.outputs[0].name = "renamed"
        return PassResult(True)


@register_pass
class CastFirstInput(Pass):
    """Test pass: the first node reads its input through a Cast to float64; its other readers keep float32, so an
    elementwise op then mixes float64 and float32 -- ill-typed for ONNX (and refused by ONNX Runtime)."""

    name = "test-cast-first-input"

    def run(self, graph, ctx):
        first = graph.nodes[0]
        cast = Node("Cast", [first.inputs[0]], {"to": 11})
        graph.insert_before(first, cast)
        first.set_input(0, cast.outputs[0])
        return PassResult(True)


@register_pass
class BreakNumbersQuietly(Pass):
    """Test pass: replaces a Relu by Neg (wrong on purpose) and reports no change."""

    name = "test-break-numbers-quietly"

    def run(self, graph, ctx):
        BreakNumbers().run(graph, ctx)
        return PassResult(False)


@register_pass
class NewWeightQuietly(Pass):
    """Test pass: gives an initializer a new Tensor (its data scaled) and reports no change."""

    name = "test-new-weight-quietly"

    def run(self, graph, ctx):
        v = next(iter(graph.initializers.values()))
        v.const = Tensor(v.const.numpy() * np.float32(1.5))
        return PassResult(False)


@register_pass
class Crash(Pass):
    """Test pass: raises."""

    name = "test-crash"

    def run(self, graph, ctx):
        raise RuntimeError("boom")


def test_fixpoint_runs_until_nothing_changes():
    CALLS.clear()
    g = relu_chain(4)  # three Relu-of-Relu pairs to remove, one per run
    res = PassManager("fixpoint(max_iters=10){test-drop-one-relu}").run(g)
    assert [n.op_type for n in g.nodes] == ["Relu"]
    assert CALLS["test-drop-one-relu"] == 4  # 3 changing runs + 1 that finds nothing
    assert res.changed and res.stats()["test-drop-one-relu"]["removed"] == 3


def test_fixpoint_that_does_not_converge_says_so(caplog):
    g = relu_chain(5)
    with caplog.at_level(logging.INFO, logger="graphmill"):
        res = PassManager("fixpoint(max_iters=2){test-drop-one-relu}").run(g)
    assert len(g) == 3 and res.notes == ["main: fixpoint did not converge in 2 iterations"]
    # said once, as a note of the result: the CLI printed a logger warning before its summary's note too
    assert [r.levelno for r in caplog.records if "did not converge" in r.getMessage()] == [logging.INFO]
    assert PassManager("fixpoint(max_iters=1){test-drop-one-relu}").run(relu_chain(5)).notes == [
        "main: fixpoint did not converge in 1 iteration"]


def test_repeat_and_named_schedules():
    from graphmill.passes.dsl import parse_schedule

    CALLS.clear()
    sched = parse_schedule("schedule inner { test-noop; test-noop }\nschedule main2 { repeat(3) { inner } test-noop }")
    PassManager(sched).run(relu_chain())
    assert CALLS["test-noop"] == 3 * 2 + 1


def test_analyses_are_cached_and_invalidated_by_what_passes_preserve():
    ctx = PassContext()
    g = relu_chain()
    # noop computes test-count; a preserving change keeps it; a non-preserving change drops it
    PassManager("test-noop,test-noop", ctx=ctx).run(g)
    assert ctx.computed["test-count"] == 1
    PassManager("test-drop-one-relu,test-noop", ctx=ctx).run(g)
    assert ctx.computed["test-count"] == 1  # test-drop-one-relu preserves it
    PassManager("test-claim-change,test-noop", ctx=ctx).run(g)
    assert ctx.computed["test-count"] == 2


def test_analyses_are_cached_per_graph():
    """One context (or a manager run again) on a second graph computes the analysis for that graph; it returned
    the first graph's (an outside check: a node count of 2 for a graph of 6)."""
    ctx = PassContext()
    small, big = relu_chain(2), relu_chain(6)
    assert ctx.analysis("test-count", small) == 2
    assert ctx.analysis("test-count", big) == 6
    assert ctx.analysis("test-count", small) == 2 and ctx.computed["test-count"] == 2
    ctx.invalidate()
    assert ctx.cached() == set()
    # a graph the context no longer needs is not kept alive by it (the cache held every graph it had seen)
    import gc
    import weakref

    ctx.analysis("test-count", big)
    dead = weakref.ref(big)
    del big
    gc.collect()
    assert dead() is None and ctx.cached() == set()


def test_a_pass_that_changes_the_graph_but_reports_no_change_is_named():
    """The check-numerics compares after passes that report a change: a pass that edited quietly was passed over
    and the next changing pass was blamed (an outside check). Reference: ONNX Runtime outputs, and the graph's
    state before the pass."""
    check = ortb.NumericsCheck(seed=0, dims={"N": 3})
    with pytest.raises(PassFailure, match="'test-break-numbers-quietly'.*returned changed=False but changed"):
        PassManager("test-break-numbers-quietly,test-drop-one-relu", [ChangeClaimCheck(), check]).run(relu_chain(2))
    with pytest.raises(PassFailure, match="'test-break-numbers-quietly'.*returned changed=False"):
        PassManager("test-noop,test-break-numbers-quietly", verify_each=True).run(relu_chain(2))
    PassManager("test-noop,test-drop-one-relu,test-noop", verify_each=True).run(relu_chain(3))  # honest: passes


@register_analysis
class CountNodesChecked(Analysis):
    name = "test-count-checked"

    def compute(self, graph, ctx):
        return len(graph)


@register_pass
class ClaimsCountKept(Pass):
    """Test pass: removes a Relu-of-Relu and declares the node count preserved (false), as a plain string."""

    name = "test-claims-count-kept"
    preserves = "test-count-checked"

    def run(self, graph, ctx):
        ctx.analysis("test-count-checked", graph)
        return PassResult(drop_one_relu_pair(graph))


def test_a_false_preserved_claim_is_named():
    """A pass that changed the graph and declared preserved an analysis its edit changed: the next pass read the
    stale result and nothing said so (an outside check). --verify-each recomputes what a changing pass kept cached
    (LLVM's verify-analysis-invalidation). Reference: the analysis computed afresh on the graph the pass left."""
    assert pass_class("test-claims-count-kept").preserves == frozenset({"test-count-checked"})  # one name, not
    # a string whose substrings match ("count-checked" was kept too)
    with pytest.raises(PassFailure, match="'test-claims-count-kept'.*declares analysis 'test-count-checked' "
                                          "preserved, but the graph it left gives another"):
        PassManager("test-claims-count-kept", verify_each=True).run(relu_chain(3))
    g = relu_chain(3)
    PassManager("test-claims-count-kept").run(g)  # without the check the claim is taken on its word
    assert len(g) == 2


@register_analysis
class RowSums(Analysis):
    name = "test-row-sums"

    def compute(self, graph, ctx):
        return np.array([len(graph.inputs), len(graph.outputs)])


@register_pass
class KeepsRowSums(Pass):
    """Test pass: removes a Relu-of-Relu, truthfully preserving an array-valued analysis (inputs and outputs)."""

    name = "test-keeps-row-sums"
    preserves = frozenset({"test-row-sums"})

    def run(self, graph, ctx):
        ctx.analysis("test-row-sums", graph)
        return PassResult(drop_one_relu_pair(graph))


def test_a_true_claim_about_an_array_valued_analysis_passes_verify_each():
    """Comparing arrays with != has no truth value: the check failed a truthful pass (a reviewer). The check
    also runs after VerifyEach, so a broken graph gets verify's message, not an analysis's crash."""
    from graphmill.passes import PreservedAnalysesCheck, VerifyEach

    g = relu_chain(3)
    pm = PassManager("test-keeps-row-sums", verify_each=True)
    pm.run(g)
    assert len(g) == 2
    kinds = [type(i) for i in pm.instruments]
    assert kinds.index(VerifyEach) < kinds.index(PreservedAnalysesCheck)


def test_a_preserved_analysis_nobody_registered_is_refused_before_anything_runs():
    @register_pass
    class Misspelled(Pass):
        name = "test-preserves-misspelled"
        preserves = frozenset({"use-count"})

        def run(self, graph, ctx):
            return PassResult(False)

    with pytest.raises(UserInputError, match="pass 'test-preserves-misspelled' declares unknown analysis "
                                             "'use-count' preserved \\(did you mean 'use-counts'\\?\\)"):
        PassManager("test-preserves-misspelled")


def test_an_unregistered_pass_object_preserving_one_name_as_a_string_runs():
    """The README: ``preserves`` is "all" or a set of registered names, one name alone as a string, and a pass
    object runs registered or not. Unregistered, the string was read letter by letter ("declares unknown analysis
    'a' preserved" for "shapes"; an outside check); the analysis manager kept it as the one name. Reference: the
    registered twin, and the analysis left cached after the run (the pass said it preserved it)."""
    class KeepsCount(ClaimsCountKept):  # its run, unregistered, with preserves as the one name again (the registered
        name = "test-unregistered-keeps-count"  # class's was normalized to a set when registered)
        preserves = "test-count-checked"

    g = relu_chain(3)
    pm = PassManager([KeepsCount()])
    pm.run(g)
    assert KeepsCount.preserves == frozenset({"test-count-checked"}) and len(g) == 2
    assert "test-count-checked" in pm.ctx.cached()  # kept after a change: preserved, as declared

    class Unknown(KeepsCount):
        preserves = "no-such-analysis"

    with pytest.raises(UserInputError, match="declares unknown analysis 'no-such-analysis' preserved"):
        PassManager([Unknown()])


def test_a_quiet_weight_edit_is_named_and_its_reproducer_reproduces(tmp_path):
    """A new Tensor for a weight is a change (tensors are immutable, so an edit is a new Tensor); the reproducer
    is the model before the pass that lied, so its rerun fails the same way."""
    b = GraphBuilder("w")
    x = b.input("x", "float32", ["N", 4])
    b.output(b.MatMul(x, b.const(np.eye(4, dtype=np.float32))), "y")
    path = tmp_path / "m.onnx"
    graphmill.save(b.build(), path)
    with pytest.raises(ReproducerError, match="after pass 'test-new-weight-quietly'") as ei:
        optimize(graphmill.load(path), "cse,test-new-weight-quietly,test-claim-change", check_numerics=True,
                 reproducer_dir=str(tmp_path / "r"))
    before = graphmill.load(tmp_path / "r" / "before.onnx")
    np.testing.assert_array_equal(next(iter(before.initializers.values())).const.numpy(), np.eye(4))
    with pytest.raises(ReproducerError, match="'test-new-weight-quietly'.*returned changed=False"):
        optimize(before, schedule_file=str(tmp_path / "r" / "repro.mill"), check_numerics=True,
                 reproducer_dir=str(tmp_path / "again"))
    assert "returned changed=False" in str(ei.value)


def test_an_option_default_its_own_option_refuses_fails_at_registration():
    """``Option("n", int, "abc")`` registered, and failed only when the pass ran without the option (an outside
    check)."""

    class BadDefault(Pass):
        name = "test-bad-default"
        options = (Option("n", int, "abc", "an int"),)

    with pytest.raises(ValueError, match="option 'n' must be an integer, got 'abc' .its default"):
        register_pass(BadDefault)


@register_pass
class ExitsThePython(Pass):
    """Test pass: calls sys.exit, as a plugin may."""

    name = "test-sys-exit"

    def run(self, graph, ctx):
        raise SystemExit(0)


ODD_STAT: list = []


@register_pass
class ReportsAStat(Pass):
    name = "test-odd-stat"

    def run(self, graph, ctx):
        return PassResult(False, {"v": ODD_STAT[-1]})


def test_a_pass_that_exits_python_is_a_failure_of_that_pass():
    """A plugin's ``sys.exit(0)`` ended ``graphmill optimize`` with exit 0 and nothing written (an outside check):
    the manager caught ``Exception`` only."""
    with pytest.raises(PassFailure, match=r"pass 'test-sys-exit' \(#2, main > test-sys-exit\) failed: SystemExit: 0 "
                                          r"\[passes run before it: test-noop\]"):
        PassManager("test-noop,test-sys-exit").run(relu_chain())


@pytest.mark.parametrize("value", ["b", None, [1, 2], float("nan"), float("inf")])
def test_a_stat_that_is_not_a_finite_number_is_a_failure_of_its_pass(value):
    """A plugin's stat "b" crashed the report's sum with a traceback; NaN wrote a JSON report strict parsers refuse
    (an outside check). Reference: RFC 8259 (no NaN or Infinity in JSON)."""
    ODD_STAT.append(value)
    with pytest.raises(PassFailure, match=r"pass 'test-odd-stat' returned stat 'v' = .*: stats map names to finite "
                                          r"numbers"):
        PassManager("test-odd-stat").run(relu_chain())
    ODD_STAT.append(np.int64(3))  # numpy's numbers are numbers, recorded as Python's: the JSON report wrote "3"
    record = PassManager("test-odd-stat").run(relu_chain()).records[0]
    assert type(record.stats["v"]) is int and record.stats["v"] == 3
    ODD_STAT.append(np.float32(0.5))
    assert type(PassManager("test-odd-stat").run(relu_chain()).records[0].stats["v"]) is float


def test_check_numerics_compares_the_passes_after_a_resizing_pass_with_its_output():
    """``--check-numerics`` named compound-scale as failing ("ONNX Runtime failed running graph ...: Got invalid
    dimensions for input"): the original's inputs do not fit the scaled network (an outside check). A pass that
    resizes the interface on purpose is not compared; the passes after it are, with its output. Reference: ONNX
    Runtime's outputs of the graph after the resizing pass."""
    report = optimize(relu_chain(), "test-widen-input,test-drop-one-relu", check_numerics=True, dims={"N": 2})
    assert report.numerics["checks"] == 1 and "test-widen-input" not in report.numerics["max_abs_diff_by_pass"]
    assert any("--check-numerics compared each pass after it with its output" in n for n in report.notes)
    with pytest.raises(ReproducerError, match=r"pass 'test-break-numbers' .*changed the numbers"):
        optimize(relu_chain(), "test-widen-input,test-break-numbers", check_numerics=True, dims={"N": 2},
                 reproducer_dir=None)


def test_option_errors_surface_before_anything_runs():
    CALLS.clear()
    with pytest.raises(GraphmillError, match="level"):
        PassManager("test-drop-one-relu,test-noop{level=-1}")
    assert "test-drop-one-relu" not in CALLS


def test_failure_names_the_pass_its_place_and_the_passes_before():
    g = relu_chain()
    with pytest.raises(PassFailure) as ei:
        PassManager("test-noop,fixpoint{test-drop-one-relu},test-crash", keep_snapshots=True).run(g)
    msg = str(ei.value)
    assert "pass 'test-crash'" in msg and "RuntimeError: boom" in msg
    assert "main > test-crash" in msg and "passes run before it: test-noop, test-drop-one-relu" in msg
    assert ei.value.before is not None and len(ei.value.before) == 1  # the graph as it was before test-crash


@pytest.mark.parametrize("bad, needle", [
    ("test-specialize-batch", "symbolic dimension 0 'N', which a pass turned into the constant 1"),
    ("test-swallow-output", "output %ghost is not defined"),
    # before, a shape or a dimension lost passed: the written model's output declared less than the input's
    # (reference for these two: relu_chain's declared output type, float32[N, 4])
    ("test-forget-output-shape", "graph output 'y' lost its shape float32[N,4]"),
    ("test-forget-output-dim", "graph output 'y' lost dimension 1 (4): float32[N,4] became float32[N,?]"),
])
def test_verify_each_catches_interface_breaks(bad, needle):
    with pytest.raises(PassFailure, match=f"after pass '{bad}'") as ei:
        PassManager(f"test-noop,{bad}", verify_each=True).run(relu_chain())
    assert needle in str(ei.value)


def test_verify_each_lets_a_symbol_no_input_carries_become_the_size_inference_proves(tmp_path):
    """The TorchScript exporter names sizes it did not work out (``Resizey_dim_1``) in the declared outputs;
    ``--verify-each`` refused the shape-inference pass for proving one (an outside check's fuzzer: 5 of 524 runs
    on exported models; the same run without it wrote the size). A symbol an input carries stays held. Reference:
    ONNX Runtime's output shape of the model at several batch sizes."""
    import onnx
    from onnx import TensorProto, helper

    def model(out_dims):
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)])
        path = str(tmp_path / f"m{len(out_dims)}{out_dims[1]}.onnx")
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    path = model(["N", "Reluy_dim_1"])
    for batch in (1, 5):  # the reference: the output's dimension 1 is 3 whatever the batch
        assert ortb.run(graphmill.load(path), {"x": np.ones((batch, 3), np.float32)})["y"].shape == (batch, 3)
    g = graphmill.load(path)
    PassManager("shape-inference", verify_each=True).run(g)
    assert g.outputs[0].type.shape == ("N", 3)
    with pytest.raises(PassFailure, match="symbolic dimension 0 'N', which a pass turned into the constant 1"):
        PassManager("test-specialize-batch", verify_each=True).run(graphmill.load(path))


def test_verify_each_catches_a_renamed_output():
    """The README promises outputs keep their names; before, a rename passed verify-each and the comparison."""
    with pytest.raises(PassFailure, match="after pass 'test-rename-output'") as ei:
        PassManager("test-noop,test-rename-output", verify_each=True).run(relu_chain())
    assert "graph output 'y' was renamed to 'renamed'" in str(ei.value)


def test_optimize_without_verify_each_refuses_an_output_that_lost_its_shape():
    """The check after the schedule holds the outputs' ranks (sizes may change: compound-scale); a shape lost
    entirely is a rank lost, quoted as declared. Before, the model was written with its output's shape gone.
    Reference: relu_chain's declared output type, float32[N, 4]."""
    with pytest.raises(GraphmillError, match=r"graph output 'y' lost its shape float32\[N,4\]; a pass of the "
                                             r"schedule broke it"):
        optimize(relu_chain(), "test-forget-output-shape", compare=False)


def _add_of_input_twice() -> graphmill.Graph:
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [4])
    b.output(b.Add(x, x), "y")
    return b.build()


def test_verify_each_catches_an_ill_typed_graph_and_names_the_pass():
    """Reference: onnx's schemas (Add's T binds both inputs to one type; strict type inference) and ONNX Runtime,
    which refuses the same graph. Before: verify-each passed it and the run ended at ONNX Runtime's load error,
    blamed on the input model, no pass named."""
    with pytest.raises(PassFailure, match="after pass 'test-cast-first-input'") as ei:
        PassManager("test-cast-first-input", verify_each=True).run(_add_of_input_twice())
    assert "the graph is ill-typed: (op_type:Add" in str(ei.value) and "inconsistent type" in str(ei.value)
    g = _add_of_input_twice()
    PassManager("test-cast-first-input").run(g)  # what verify-each saw is what ONNX Runtime refuses
    with pytest.raises(GraphmillError, match="bound to different types"):
        ortb.run(g, {"x": np.ones(4, np.float32)})


def test_optimize_reproducer_of_a_verify_each_failure_reruns_with_verify_each(tmp_path):
    """The rerun command carries --verify-each: without it the renamed output would rerun without complaint."""
    with pytest.raises(ReproducerError) as ei:
        optimize(relu_chain(), "test-rename-output", verify_each=True, reproducer_dir=str(tmp_path / "r"))
    assert " --verify-each " in ei.value.rerun


def test_numerics_check_names_the_first_breaking_pass_and_output():
    """Reference: ONNX Runtime outputs of the graph as it entered the pipeline."""
    g = relu_chain(2)
    check = ortb.NumericsCheck(seed=0, dims={"N": 3})
    with pytest.raises(PassFailure) as ei:
        PassManager("test-drop-one-relu,test-break-numbers,test-noop", [check]).run(g)
    msg = str(ei.value)
    assert "after pass 'test-break-numbers'" in msg and "output 'y' diverged" in msg
    assert check.checks == 2  # after each changing pass


def test_time_passes_counts_the_pass_alone_not_the_checks_around_it():
    """With --verify-each, the verification after each pass was counted as the pass's time (dce 5.27 ms against
    0.19 ms; an outside check). Reference: an instrument that sleeps 0.3 s in each hook, registered before and
    after the timer, against a pass that does nothing on a three-node graph. (0.3 s per hook, so that the bound
    leaves the two no-op runs 0.15 s, against a pause of the process under load: 50 ms left them 50 ms.)"""
    import time

    class Slow:
        def before_pass(self, *args):
            time.sleep(0.3)

        def after_pass(self, *args):
            time.sleep(0.3)

    timer = TimePasses()
    PassManager("test-noop,test-noop", [Slow(), timer, Slow()], verify_each=True).run(relu_chain())
    (row,) = timer.rows()
    assert row["runs"] == 2 and row["seconds"] < 0.15  # any one hook counted would be 0.3 s


def test_time_passes_and_print_ir():
    timer = TimePasses()
    buf = io.StringIO()
    PassManager("test-noop,test-drop-one-relu,test-noop", [timer, PrintIR("all", diff=True, stream=buf)]).run(
        relu_chain())
    assert {r["pass"] for r in timer.rows()} == {"test-noop", "test-drop-one-relu"}
    assert dict((r["pass"], r["runs"]) for r in timer.rows())["test-noop"] == 2
    assert "test-noop" in timer.table()
    out = buf.getvalue()
    assert "IR diff after pass 'test-drop-one-relu'" in out and "-  %" in out  # a removed line
    assert "after pass 'test-noop'" not in out  # unchanged passes print nothing
    buf = io.StringIO()
    PassManager("test-noop,test-drop-one-relu", [PrintIR({"test-noop"}, stream=buf)]).run(relu_chain())
    # asked for by name, a pass that changed nothing says so (before: nothing, as if it had never run)
    assert buf.getvalue() == "// ----- IR after pass 'test-noop' (#1, main > test-noop): unchanged -----\n"


def test_optimize_writes_a_reproducer_that_reproduces(tmp_path):
    path = tmp_path / "m.onnx"
    graphmill.save(relu_chain(2), path)
    g = graphmill.load(path)
    repro = tmp_path / "repro"
    with pytest.raises(ReproducerError) as ei:
        optimize(g, "test-drop-one-relu,test-break-numbers", check_numerics=True, dims=None,
                 reproducer_dir=str(repro))
    assert str(repro) in str(ei.value)
    assert sorted(os.listdir(repro)) == ["README.txt", "before.onnx", "repro.mill", "schedule.mill"]
    # the folder carries the command that reruns it (it was only on stderr; an outside check)
    assert f"rerun: {ei.value.rerun}\n" in (repro / "README.txt").read_text() and "--check-numerics" in ei.value.rerun
    before = graphmill.load(repro / "before.onnx")
    assert [n.op_type for n in before.nodes] == ["Relu"]  # after test-drop-one-relu, before the breaking pass
    with pytest.raises(ReproducerError, match="test-break-numbers"):
        optimize(before, schedule_file=str(repro / "repro.mill"), check_numerics=True,
                 reproducer_dir=str(tmp_path / "again"))


class _ApproxPass(RewritePass):
    """Test pass: one exact and one approximate rule."""

    name = "test-rules"
    rules = (
        Rule("test-neg-neg", Op("Neg", Op("Neg", Var("x"), name="inner"), name="outer"),
             replace=lambda m, r: r.op("Identity", m["x"]), exactness=EXACT),
        Rule("test-relu-to-abs", Op("Relu", Var("x")), replace=lambda m, r: r.op("Abs", m["x"]),
             exactness=APPROXIMATE),
    )


register_pass(_ApproxPass)


def test_approximate_rules_run_only_when_asked():
    g = relu_chain(1)
    res = PassManager("test-rules").run(g)
    assert [n.op_type for n in g.nodes] == ["Relu"]
    assert any("test-relu-to-abs" in n and "not allowed" in n for r in res.records for n in r.notes)
    PassManager("test-rules{allow=[approximate]}").run(g)
    assert [n.op_type for n in g.nodes] == ["Abs"]


def test_a_rewrite_pass_is_as_exact_as_its_least_exact_rule():
    """`graphmill passes` listed a pass whose only rule is approximate as exact, and the built-in simplify and
    fuse-activation (float-reassociating rules among exact ones) as exact (an outside check)."""
    from graphmill import api

    assert _ApproxPass.exactness == APPROXIMATE
    listed = {row["name"]: row["exactness"] for row in api.list_passes()}
    assert listed["test-rules"] == APPROXIMATE
    assert listed["simplify"] == listed["fuse-activation"] == "float-reassociating"

    class Declared(RewritePass):  # a pass that says how exact it is keeps its word
        name = "test-declared-exactness"
        exactness = EXACT
        rules = _ApproxPass.rules

    assert Declared.exactness == EXACT


class _FlipFlopPass(RewritePass):
    """Test pass: two rules that undo each other, so that no sweep is ever the last."""

    name = "test-flip-flop"
    rules = (Rule("test-relu-to-abs-again", Op("Relu", Var("x")), replace=lambda m, r: r.op("Abs", m["x"])),
             Rule("test-abs-to-relu", Op("Abs", Var("x")), replace=lambda m, r: r.op("Relu", m["x"])))


register_pass(_FlipFlopPass)


def test_a_rewrite_pass_that_reaches_no_fixpoint_says_so():
    """A rule that always fires (or two that undo each other) stopped at max_rounds without a word: the graph
    was whatever the last sweep left. Reference: the sweeps counted by the pass's own statistics."""
    g = relu_chain(1)
    res = PassManager("test-flip-flop{max_rounds=3}").run(g)
    (record,) = res.records
    assert sum(record.stats.values()) == 3  # one rewrite per sweep, three sweeps
    assert any("no fixpoint after max_rounds=3" in str(n) and "test-relu-to-abs-again" in str(n)
               for n in record.notes), record.notes
    settled = PassManager("test-rules").run(relu_chain(1))  # a pass that settles says nothing of the kind
    assert not any("fixpoint" in str(n) for r in settled.records for n in r.notes)


def test_rules_can_be_disabled_by_name():
    g = relu_chain(1)
    res = PassManager("test-rules{allow=[approximate], disable=[test-relu-to-abs]}").run(g)
    assert [n.op_type for n in g.nodes] == ["Relu"] and not res.changed
    assert any("'test-relu-to-abs' disabled by the schedule" in n for r in res.records for n in r.notes)
    with pytest.raises(GraphmillError, match="does not accept 'relu-to-abs' .did you mean 'test-relu-to-abs'"):
        PassManager("test-rules{disable=[relu-to-abs]}")


def test_a_note_repeated_by_a_repeat_is_reported_once():
    """A pass inside repeat(3) said its note on each run, and `optimize` printed it three times (an outside
    check). Reference: the one note the pass gives per run, counted."""
    import graphmill

    g = relu_chain(1)
    report = graphmill.optimize(g, "repeat(3){test-rules{allow=[approximate], disable=[test-relu-to-abs]}}")
    assert sum("'test-relu-to-abs' disabled by the schedule" in n for n in report.notes) == 1, report.notes


def test_explain_match_reports_the_closest_partial_match():
    from graphmill.optimization import explain

    b = GraphBuilder("g")
    x = b.input("x", "float32", [4])
    inner = b.Neg(x)
    b.output(b.Neg(inner), "y")
    b.output(b.Relu(inner), "z")  # inner has two users: the rule must not fire
    g = b.build()
    text = explain(g, "test-neg-neg")
    assert "does not fire" in text and "has 2 uses" in text and "Neg node" in text
    with pytest.raises(GraphmillError, match="did you mean 'test-neg-neg'"):
        explain(g, "test-neg-nag")


def test_explain_match_says_an_approximate_rule_was_not_allowed():
    """It said "matches at ..." and nothing else, as if the rule were broken (an outside check)."""
    report = optimize(relu_chain(1), "test-rules", explain_rule="test-relu-to-abs")
    assert "runs only when allowed (--allow approximate" in report.explain, report.explain
    report = optimize(relu_chain(1), "test-rules", explain_rule="test-relu-to-abs", allow=["exact", "approximate"])
    assert "fired 1 time(s)" in report.explain and "only when allowed" not in report.explain


def test_explain_match_says_the_schedule_did_not_run_the_rule():
    """"matches at ..." alone, for a rule the schedule disabled or whose pass it does not run, read as if the rule
    were broken (an outside check). Reference: the schedules as written."""
    b = GraphBuilder("g")
    x = b.input("x", "float32", [4])
    b.output(b.Neg(b.Neg(x)), "y")
    report = optimize(b.build(), "test-rules(disable=[test-neg-neg])", explain_rule="test-neg-neg")
    assert report.explain.startswith("rule 'test-neg-neg' matches at ") and report.explain.endswith(
        "; the schedule runs 'test-rules' with it disabled (disable=[test-neg-neg]) [rule of pass 'test-rules', "
        "exact]"), report.explain
    b = GraphBuilder("g")
    x = b.input("x", "float32", [4])
    b.output(b.Neg(b.Neg(x)), "y")
    report = optimize(b.build(), "dce", explain_rule="test-neg-neg")
    assert "; its pass 'test-rules' is not in the schedule [" in report.explain, report.explain


def test_explain_match_says_how_often_the_rule_fired_in_the_run():
    """The rule rewrote the only match; before, the report said just "cannot match", as if it had never run."""
    b = GraphBuilder("g")
    x = b.input("x", "float32", [4])
    b.output(b.Neg(b.Neg(x)), "y")
    report = optimize(b.build(), "test-rules", explain_rule="test-neg-neg")
    assert report.explain.startswith("rule 'test-neg-neg' fired 1 time(s) during the schedule; in the optimized "
                                     "model: rule 'test-neg-neg' cannot match: no Neg node"), report.explain


def test_builtin_analyses_are_cached_until_a_change():
    """Reference: the graph itself (node and use counts written out from its construction)."""
    g = relu_chain(3)
    ctx = PassContext()
    uses = ctx.analysis("use-counts", g)
    assert sorted(uses.values()) == [0, 1, 1, 1]  # x and two Relu outputs read once; y is only an output
    assert ctx.analysis("use-counts", g) is uses  # cached
    costs = ctx.analysis("costs", g)
    assert set(costs) == {id(n) for n in g.nodes}
    assert not any(c.known for c in costs.values())  # the batch N is symbolic: sizes are unknown, not guessed
    PassManager("test-claim-change", ctx=ctx).run(g)
    assert ctx.cached() == set()
    with pytest.raises(GraphmillError, match="unknown analysis 'use-count'"):
        ctx.analysis("use-count", g)


# -- providers: what passes get from the frontend and backends, through the context ----------------

def _const_add_graph():
    """y = x + (a + b) with constants a, b: fold-constants must evaluate the inner Add (not a numpy op)."""
    b = GraphBuilder("g", opset=17)
    x = b.input("x", "float32", [3])
    a = b.const(np.array([1.0, 2.0, 3.0], np.float32))
    c = b.const(np.array([10.0, 20.0, 30.0], np.float32))
    b.output(b.Add(x, b.Add(a, c)), "y")
    return b.build()


class CountingEvaluator:
    """A NodeEvaluator computing Add with numpy (the reference: a hand-checkable sum)."""

    def __init__(self):
        self.calls = []

    def evaluate(self, node, inputs, graph):
        self.calls.append(node.op_type)
        if node.op_type != "Add":
            raise graphmill.errors.ExecutionError("only Add")
        return [inputs[0] + inputs[1]]


def _folded_constant(g):
    (add,) = [n for n in g.nodes if n.op_type == "Add"]
    return add.inputs[1].const.numpy()


def test_fold_constants_asks_the_context_node_evaluator():
    g = _const_add_graph()
    ev = CountingEvaluator()
    res = PassManager("fold-constants", ctx=PassContext(node_evaluator=ev)).run(g)
    assert ev.calls == ["Add"] and res.stats()["fold-constants"]["folded"] == 1
    assert _folded_constant(g).tolist() == [11.0, 22.0, 33.0]  # 1+10, 2+20, 3+30


def test_without_a_node_evaluator_only_numpy_ops_fold_and_the_note_says_why():
    g = _const_add_graph()
    res = PassManager("fold-constants", ctx=PassContext(node_evaluator=None)).run(g)
    assert len([n for n in g.nodes if n.op_type == "Add"]) == 2
    assert any("no node evaluator" in n for n in res.records[0].notes)


def test_a_bare_context_uses_the_installed_defaults_onnxruntime_and_onnx():
    from graphmill.backends.onnxruntime import OrtNodeEvaluator
    from graphmill.frontend.onnx_shape_inference import OnnxShapeInferencer

    ctx = PassContext()
    assert isinstance(ctx.node_evaluator, OrtNodeEvaluator)  # installed by importing graphmill
    assert isinstance(ctx.shape_inferencer, OnnxShapeInferencer)
    g = _const_add_graph()
    PassManager("fold-constants").run(g)  # no context given at all: ONNX Runtime evaluates the Add
    assert _folded_constant(g).tolist() == [11.0, 22.0, 33.0]


class CountingInferencer:
    def __init__(self):
        self.calls = 0

    def refine(self, graph, report):
        self.calls += 1
        for n in graph.nodes:
            if n.op_type == "TestOpaque":
                n.outputs[0].type = TensorType(n.inputs[0].type.dtype, n.inputs[0].type.shape)


def test_shape_inferencer_is_asked_only_for_what_the_registry_leaves_open():
    inf = CountingInferencer()
    g = relu_chain()  # every value typed by the registry
    PassManager("shape-inference", ctx=PassContext(shape_inferencer=inf)).run(g)
    assert inf.calls == 0
    b = GraphBuilder("g")
    x = b.input("x", "float32", ["N", 4])
    y = b.op("TestOpaque", x, domain="test.opaque")  # no registry entry: its output stays open
    b.output(b.Relu(y), "y")
    g = b.build(infer=False)
    res = PassManager("shape-inference", ctx=PassContext(shape_inferencer=inf)).run(g)
    assert inf.calls == 1 and res.records[0].stats["fallback"] == 1
    assert g.nodes[0].outputs[0].type == TensorType(x.type.dtype, ("N", 4))  # the inferencer's answer


def test_two_ops_of_one_type_without_names_match_as_two_nodes():
    """`Op("Relu", Op("Relu", Var("x")))` never matched: both ops took the default name 'relu', which the
    matcher reads as one node, and --explain-match blamed the input. Default names are now unique (root first);
    a name given twice still means one node. Reference: the graph built by hand, Relu(Relu(x))."""
    b = GraphBuilder("g")
    x = b.input("x", "float32", [4])
    b.output(b.Relu(b.Relu(x)), "y")
    g = b.build()
    rule = Rule("relu-relu", Op("Relu", Op("Relu", Var("x"))), replace=lambda m, r: r.op("Relu", m["x"]))
    assert (rule.pattern.name, rule.pattern.inputs[0].name) == ("relu", "relu_2")
    root = next(n for n in g.nodes if n.outputs[0] in g.outputs)
    m = rule.match(g, root)
    assert m is not None and m.node("relu") is root and m.node("relu_2") is not root
    same = Rule("same", Op("Relu", Op("Relu", Var("x"), name="r"), name="r"), replace=lambda m, r: m["x"])
    assert same.match(g, root) is None  # one name, one node: a chain of two cannot be it


def test_explain_says_when_a_match_is_left_for_its_graph_output():
    """--explain-match said "rule 'mul-one' matches at Mul node" for y = Mul(1, x) with y a graph output and x a
    graph input, where the rule cannot fire (y would become the input). Reference: simplify itself leaves
    that node, run here."""
    import numpy as np

    from graphmill.optimization import explain

    b = GraphBuilder("g")
    x = b.input("x", "float32", [4])
    b.output(b.Mul(b.const(np.ones((), np.float32), "one"), x), "y")
    g = b.build()
    PassManager("simplify").run(g)
    assert [n.op_type for n in g.nodes] == ["Mul"]  # the rule left it
    text = explain(g, "mul-one")
    assert "matches at" not in text and "the pattern matches and the check passes, but its output is a graph " \
                                        "output" in text, text


@register_pass
class MakeCycle(Pass):
    """Test pass: feeds the last node's output back into the first node (a cycle)."""

    name = "test-make-cycle"

    def run(self, graph, ctx):
        first, last = graph.nodes[0], graph.nodes[-1]
        first.set_input(0, last.outputs[0])
        return PassResult(True)


def test_a_schedule_that_breaks_the_graph_fails_without_verify_each():
    """Without --verify-each a pass that made a cycle had its model written, exit 0 (ONNX Runtime then refused it:
    "the graph is not acyclic"); the graph is now verified once after the schedule. Reference: the IR verifier's
    own finding, and --verify-each, which names the pass."""
    def chain():
        b = GraphBuilder("g")
        x = b.input("x", "float32", [4])
        b.output(b.Neg(b.Relu(x)), "y")
        return b.build()

    with pytest.raises(GraphmillError, match="the optimized graph does not verify: .*used before it is defined.*--verify-each"):
        optimize(chain(), "test-make-cycle", compare=False)
    with pytest.raises(GraphmillError, match="test-make-cycle"):
        optimize(chain(), "test-make-cycle", compare=False, verify_each=True)


@register_pass
class RenameInput(Pass):
    """Test pass: renames the first graph input (the comparison feeds inputs by position)."""

    name = "test-rename-input"

    def run(self, graph, ctx):
        graph.inputs[0].name = "renamed_input"
        return PassResult(True)


def test_a_renamed_input_fails_and_a_resized_output_passes_without_verify_each():
    """The final check goes by names, element types and ranks: a renamed input passed the comparison (it feeds
    inputs by position); sizes may change on purpose, as compound-scale's resolution changes a headless model's
    output (a review caught the first version of the check refusing that). Reference: the graph's own
    interface before and after."""
    with pytest.raises(GraphmillError, match="graph input 'x' was renamed to 'renamed_input'.*--verify-each"):
        optimize(relu_chain(), "test-rename-input", compare=False)
    b = GraphBuilder("headless")
    x = b.input("x", "float32", [1, 3, 16, 16])
    b.output(b.Relu(b.Conv(x, np.ones((8, 3, 3, 3), np.float32), pads=[1, 1, 1, 1])), "y")
    g = b.build()
    optimize(g, "compound-scale{phi=1, alpha=1, beta=1, gamma=1.2}", compare=False)
    assert g.inputs[0].shape == (1, 3, 19, 19) and g.outputs[0].shape == (1, 8, 19, 19) and g.outputs[0].name == "y"


def test_a_renamed_output_or_an_ill_typed_graph_fails_without_verify_each():
    """Found by an outside check: a pass renaming a graph output passed with exit 0 (the comparison matches outputs
    by position: 'max |diff| 0'), and a pass mixing float32 and float64 in an Add wrote a model ONNX Runtime cannot
    load (exit 0 with --no-compare; otherwise an error that did not say which model). Reference: --verify-each's
    own findings for the same passes; onnx's type check."""
    for name, model, says in (("test-rename-output", relu_chain, "was renamed to 'renamed'"),
                              ("test-cast-first-input", _add_of_input_twice, "the optimized graph is ill-typed")):
        with pytest.raises(GraphmillError, match=f"{re.escape(says)}.*a pass of the schedule broke it.*--verify-each"):
            optimize(model(), name, compare=False)
        with pytest.raises(GraphmillError, match=name):  # --verify-each names the pass
            optimize(model(), name, compare=False, verify_each=True)


@register_pass
class RetypeQuietly(Pass):
    """Test pass: retypes the first node's output to float64 and reports no change (types are outside the
    no-change check's key: analyses refine them)."""

    name = "test-retype-quietly"

    def run(self, graph, ctx):
        from graphmill.ir import DataType

        v = graph.nodes[0].outputs[0]
        v.type = TensorType(DataType.DOUBLE, v.type.shape)
        return PassResult(False)


def test_verify_each_never_writes_what_the_plain_run_refuses():
    """A pass retyping a value while reporting no change got past --verify-each (it type-checks the passes that
    report a change), which then wrote a model ONNX Runtime cannot load, where the plain run refused it (a review).
    The end-of-schedule checks now run under --verify-each too. Reference: onnx's type check."""
    with pytest.raises(GraphmillError, match="ill-typed.*a pass of the schedule broke it.*--verify-each"):
        optimize(relu_chain(), "test-retype-quietly", compare=False)
    with pytest.raises(GraphmillError, match="ill-typed.*a pass that reported no change broke it"):
        optimize(relu_chain(), "test-retype-quietly", compare=False, verify_each=True)


def test_default_names_are_the_rules_own_when_patterns_are_shared():
    """Patterns are shared between rules (the GELU ones); naming them for one rule renamed them for the other,
    whose m.node('relu') then raised KeyError. Reference: the names each rule's own matcher binds."""
    inner = Op("Relu", Var("x"))
    first = Rule("first", inner, replace=lambda m, r: m["x"])
    second = Rule("second", Op("Relu", inner), replace=lambda m, r: m["x"])
    assert inner.name == "relu" and first.pattern.name == "relu"
    assert (second.pattern.name, second.pattern.inputs[0].name) == ("relu", "relu_2")
    shared = Op("Neg", Var("x"))
    dag = Rule("dag", Op("Add", shared, shared), replace=lambda m, r: m["x"])
    assert dag.pattern.inputs[0] is dag.pattern.inputs[1]  # one node, used twice, stays one


def test_a_rule_whose_replace_returns_no_value_is_named():
    """A plugin rule's ``replace`` returning 7 failed as "'int' object is not iterable", naming neither the rule
    nor what it should return (an outside check); the graph is left as it was. Reference: the message by hand."""
    from graphmill.ir.rewrite import explain

    rule = Rule("test-returns-int", Op("Relu", Var("x")), replace=lambda m, r: (r.op("Abs", m["x"]), 7)[1])
    g = relu_chain(1)
    with pytest.raises(TypeError, match=r"rule 'test-returns-int': replace returned int 7, not a Value, a list of "
                                        r"Values \(None for an output left alone\) or None \(no rewrite\)"):
        rule.try_rewrite(g, g.nodes[0])
    assert [n.op_type for n in g.nodes] == ["Relu"]
    with pytest.raises(TypeError, match="rule 'test-returns-int': replace returned int"):
        explain(rule, g)


# -- the rewrite matcher: commutative ops backtrack (an outside check) ---------------------------------------------

def _distribute_graph(swap: bool):
    """y = (p + q) * p, the Add's inputs in the order ``swap`` says."""
    b = GraphBuilder(opset=17)
    p = b.input("p", "float32", [3])
    q = b.input("q", "float32", [3])
    b.output(b.Mul(b.Add(q, p) if swap else b.Add(p, q), p), "y")
    return b.build()


@pytest.mark.parametrize("swap", [False, True])
def test_a_commutative_op_tries_its_other_order_when_the_pattern_around_it_fails(swap):
    """``Mul(Add(a, b, commutative), b)`` on ``(p + q) * p`` bound a = p inside the Add and never tried b = p once
    the Mul's second input failed (with the Add's inputs written the other way it matched). Reference: the
    binding by hand, b = p, a = q, and ONNX Runtime on the graph before and after a rewrite through it."""
    pattern = Op("Mul", Op("Add", Var("a"), Var("b"), commutative=True), Var("b"))
    rule = Rule("test-distribute", pattern,
                replace=lambda m, r: r.op("Add", r.op("Mul", m["b"], m["b"]), r.op("Mul", m["a"], m["b"])))
    g = _distribute_graph(swap)
    m = rule.match(g, g.nodes[-1])
    assert m is not None and (m["b"].name, m["a"].name) == ("p", "q")
    ref = g.copy()
    assert rule.try_rewrite(g, g.nodes[-1])
    assert ortb.compare(ref, g, rtol=1e-6, atol=1e-6).ok


def test_the_first_match_passing_the_check_is_taken():
    """Both orders of a commutative op match; the check refuses the first: the second is rewritten."""
    b = GraphBuilder(opset=17)
    x = b.input("x", "float32", [3])
    y = b.input("y", "float32", [3])
    b.output(b.Add(b.Relu(x), b.Relu(y)), "out")
    g = b.build()
    rule = Rule("test-second-relu", Op("Add", Op("Relu", Var("u"), name="r"), Var("v"), commutative=True),
                check=lambda m: None if m["u"].name == "y" else "not y's Relu",
                replace=lambda m, r: r.op("Add", m["u"], m["v"]))
    assert rule.try_rewrite(g, g.nodes[-1])
    assert sorted(n.op_type for n in g.nodes) == ["Add", "Relu"]


def test_a_rule_that_crashes_is_named_with_its_node():
    """A pass of several rules said only "pass 'p' failed: KeyError: 'x'" (an outside check)."""
    from graphmill.passes import register_pass, registered_passes, run_passes

    def crash(m):
        raise KeyError("nonexistent")

    if "test-crashing-rules" not in registered_passes():
        @register_pass
        class Crashing(RewritePass):
            """Two rules, the second crashing in its check."""
            name = "test-crashing-rules"
            rules = (Rule("test-fine", Op("Neg", Var("x")), replace=lambda m, r: None),
                     Rule("test-crash", Op("Relu", Var("x")), check=crash, replace=lambda m, r: m["x"]))
    with pytest.raises(PassFailure, match=r"failed: RuleCrash: rule 'test-crash' at Relu node .*: KeyError: "
                                          r"'nonexistent'"):
        run_passes(relu_chain(1), "test-crashing-rules")


def test_a_pattern_of_many_commutative_ops_that_fails_late_is_bounded():
    """Mul(a tree of 31 commutative Adds, v0) where the Mul reads another value: every order of every Add was
    tried, 2^31, a hang (a review). Reference: the pattern cannot match (v0 is not the Mul's second input)."""
    leaves = [Var(f"v{i}") for i in range(32)]
    level = leaves
    while len(level) > 1:
        level = [Op("Add", level[i], level[i + 1], commutative=True) for i in range(0, len(level), 2)]
    rule = Rule("test-wide", Op("Mul", level[0], Var("v0")), replace=lambda m, r: None)
    b = GraphBuilder(opset=17)
    xs = [b.input(f"x{i}", "float32", [2]) for i in range(32)]
    level = xs
    while len(level) > 1:
        level = [b.Add(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    b.output(b.Mul(level[0], b.input("other", "float32", [2])), "y")
    g = b.build()
    assert rule.match(g, g.nodes[-1]) is None


def test_explain_match_of_a_rule_whose_check_raises_says_so():
    """--explain-match ran the check and printed its traceback (a review); the single-use refusal said "has 1 uses
    (or is a graph output)" of a value that was a graph output (an outside check)."""
    from graphmill.ir.rewrite import explain as explain_rule

    def crash(m):
        raise KeyError("nope")

    g = relu_chain(1)
    text = explain_rule(Rule("test-crash-explain", Op("Relu", Var("x")), check=crash, replace=lambda m, r: m["x"]), g)
    assert text.startswith("rule 'test-crash-explain': its check raised at Relu node ") and "KeyError: 'nope'" in text
    b = GraphBuilder("g")
    x = b.input("x", "float32", [4])
    inner = b.Relu(x)
    b.output(b.Relu(inner), "y")
    b.output(inner, "inner")
    text = explain_rule(Rule("test-relu-relu", Op("Relu", Op("Relu", Var("x"))), replace=lambda m, r: m["x"]),
                        b.build())
    assert "is a graph output; fusing it would duplicate its work" in text, text


def test_a_replacement_takes_a_number_or_an_array_as_a_constant():
    """r.op("Mul", m["x"], np.float32(2)) crashed the rule ("'numpy.float32' object has no attribute '_uses'")
    where GraphBuilder.op takes the same argument (an outside check). Reference: ONNX Runtime on x + x against the
    rewritten x * 2."""
    b = GraphBuilder("g")
    x = b.input("x", "float32", [3])
    b.output(b.Add(x, x), "y")
    g = b.build()
    before = g.copy()
    rule = Rule("add-self", Op("Add", Var("x"), Var("x")), replace=lambda m, r: r.op("Mul", m["x"], np.float32(2)),
                exactness=EXACT)
    assert rule.try_rewrite(g, g.nodes[0])
    assert [n.op_type for n in g.nodes] == ["Mul"] and ortb.compare(before, g, rtol=0, atol=0).ok
    # a str, as GraphBuilder refuses it: a Value's name was a string constant (a review)
    typo = Rule("add-self-typo", Op("Mul", Var("x"), Var("k")), replace=lambda m, r: r.op("Add", "x", "x"),
                exactness=EXACT)
    with pytest.raises(GraphmillError, match=r"rule 'add-self-typo': 'x' is not a Value"):
        typo.try_rewrite(g, g.nodes[0])


@register_pass
class NumbaInterrupted(Pass):
    """Test pass: a Ctrl-C lands inside numba code it runs (the simulator's), which raises a SystemError."""

    name = "test-numba-interrupted"

    def run(self, graph, ctx):
        from tests.support.interrupts import raise_numba_wrapped_interrupt

        raise_numba_wrapped_interrupt()


def test_a_ctrl_c_numba_wrapped_inside_a_pass_is_an_interrupt_not_a_failure():
    """It was reported as the pass failing ('pass ... failed: SystemError', exit 2, a reproducer folder written;
    a review). Reference: a plain Ctrl-C, which the manager lets through as KeyboardInterrupt."""
    g = _add_of_input_twice()
    with pytest.raises(KeyboardInterrupt):
        PassManager("test-numba-interrupted").run(g)


def test_a_pass_instance_runs_as_given_registered_or_not():
    """A ``Pass`` object in the list runs itself: an unregistered class was refused as "unknown pass", and a
    registered one was rebuilt from its name and options, losing what its constructor kept besides them.
    Reference: the node counts the instance records, counted by hand from ``relu_chain``."""

    class Recorder(Pass):
        """Records the graph's node count into the list it was built with."""
        name = "test-recorder-unregistered"
        preserves = "all"

        def __init__(self, sink: list, **opts):
            super().__init__(**opts)
            self.sink = sink

        def run(self, graph, ctx):
            self.sink.append(len(graph.nodes))
            return PassResult(False)

    seen: list[int] = []
    result = PassManager([Recorder(seen), "dce", Recorder(seen)]).run(relu_chain(3))
    assert seen == [3, 3]
    assert [r.name for r in result.records] == ["test-recorder-unregistered", "dce", "test-recorder-unregistered"]
    with pytest.raises(UserInputError, match="unknown pass 'test-recorder-unregistered'"):
        PassManager(["test-recorder-unregistered"])  # by name it is still unknown: it was never registered


def test_a_reproducer_of_an_unregistered_pass_object_offers_no_rerun_that_cannot_run(tmp_path):
    """optimize([..., Boom()]) wrote a rerun command that exits 2 with "unknown pass or schedule 'test-boom-...'"
    (a review). Reference: the schedule language, which names registered passes only."""

    class Boom(Pass):
        """Fails."""
        name = "test-boom-unregistered"

        def run(self, graph, ctx):
            raise RuntimeError("boom")

    with pytest.raises(ReproducerError) as e:
        optimize(relu_chain(3), ["dce", Boom()], reproducer_dir=str(tmp_path / "r"))
    assert e.value.rerun.startswith("none: test-boom-unregistered ran as Pass objects whose class is not registered")
    assert e.value.rerun_all is None
    assert f"rerun: {e.value.rerun}" in (tmp_path / "r" / "README.txt").read_text()


@pytest.mark.parametrize("cls", [3, object, type("NotAPass", (), {"name": "not-a-pass"})])
def test_register_pass_refuses_what_is_not_a_pass_class(cls):
    """register_pass(object) ended in an AttributeError from deep inside (an outside check). Reference: the
    decorator's contract (a subclass of Pass); its errors are ValueErrors, which --load-passes turns into one line."""
    with pytest.raises(ValueError, match=r"^register_pass takes a subclass of graphmill\.passes\.Pass, got "):
        register_pass(cls)


@register_pass
class CrashesFromItsSecondRun(Pass):
    """Test pass: not deterministic (it counts its runs in the process), as a user's pass with a cache may be."""

    name = "test-crash-from-second-run"
    runs = 0

    def run(self, graph, ctx):
        type(self).runs += 1
        if type(self).runs >= 2:
            raise RuntimeError(f"crash on run {type(self).runs}")
        return PassResult(False, {})


def test_a_failure_the_replay_cannot_rebuild_keeps_its_own_error_and_reproducer(tmp_path):
    """The reproducer's before.onnx is rebuilt by replaying the steps before the failing one. A pass that fails
    from its second run in the process on failed again in that replay, and the replay's error (run 3, "replay >")
    replaced the run's, with no reproducer written (an outside check). Reference: the run's own failure, raised by
    the pass on its second run."""
    CrashesFromItsSecondRun.runs = 0
    with pytest.raises(ReproducerError) as ei:
        optimize(relu_chain(), "test-crash-from-second-run,dce,test-crash-from-second-run",
                 reproducer_dir=str(tmp_path / "r"))
    message = str(ei.value)
    assert message.startswith("pass 'test-crash-from-second-run' (#3, main > test-crash-from-second-run) failed: "
                              "RuntimeError: crash on run 2 [passes run before it: test-crash-from-second-run, dce]")
    assert "could not be rebuilt" in message and "crash on run 3" in message and "rerun the whole schedule" in message
    assert not (tmp_path / "r" / "before.onnx").exists() and (tmp_path / "r" / "schedule.mill").exists()
    readme = (tmp_path / "r" / "README.txt").read_text()
    assert "error: pass 'test-crash-from-second-run' (#3" in readme and "rerun: none: the model before it" in readme


def test_a_list_schedule_takes_steps_and_refuses_other_types_by_name():
    """``PassManager([Run("dce")])`` read the Run as a pass name ("unknown pass \"Run(name='dce', options={})\"")
    and ``[42]`` said "unknown pass '42'" (an outside check). Reference: the same schedule written as DSL text."""
    from graphmill.passes.schedule import Fixpoint, Repeat, Run

    listed = PassManager([Run("dce"), Repeat([Run("cse")], 2), Fixpoint([Run("dce")], 3), "cse"]).schedule
    assert listed.body == PassManager("dce,repeat(2){cse},fixpoint(max_iters=3){dce},cse").schedule.body
    for item, kind in ((42, "int 42"), (None, "NoneType None")):
        with pytest.raises(UserInputError, match=rf"schedule's list holds passes .*, not {kind}$"):
            PassManager(["dce", item])
