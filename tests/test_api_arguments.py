"""The Python API given arguments of the wrong kind: one ``UserInputError`` whose line says what is wrong, as the
CLI's errors do, not an AttributeError or TypeError from deep inside (an outside check called every function the
README documents with such arguments). References: the CLI's rules for the same values (``--dim NAME=SIZE`` takes
integers >= 0, ``--rtol``/``--atol`` finite numbers >= 0, ``--allow LEVEL``) and the zoo builders' own options."""

from __future__ import annotations

import os

import numpy as np
import pytest

import graphmill
from graphmill import api
from graphmill.backends import onnxruntime as ortb
from graphmill.ir import UserInputError
from graphmill.passes import run_passes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def small():
    return api.zoo_build("resnet18", width=0.25, resolution=32)


@pytest.mark.parametrize("call", [
    lambda: graphmill.inspect("model.onnx"),
    lambda: graphmill.optimize("model.onnx", "dce"),
    lambda: graphmill.save("model.onnx", "x.onnx"),
    lambda: graphmill.simulate("model.onnx", "a.toml"),
    lambda: graphmill.place("model.onnx", devices=2),
    lambda: graphmill.partition("model.onnx", stages=2),
    # these gave a bare AttributeError (and run_passes "pass 'dce' failed: AttributeError"; an outside check)
    lambda: graphmill.verify("model.onnx"),
    lambda: graphmill.infer_shapes("model.onnx"),
    lambda: api.scale("model.onnx", phi=1),
    lambda: api.check_trainable("model.onnx"),
    lambda: api.check_placement("model.onnx"),
    lambda: api.replay_placement("model.onnx"),
    lambda: api.learned_optimize("model.onnx", devices=2),
    lambda: api.learned_replay("model.onnx"),
    lambda: run_passes("model.onnx", "dce"),
    lambda: graphmill.ir.find_problems("model.onnx"),
])
def test_a_path_where_a_graph_goes_says_how_to_read_one(call, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=r"^graphmill\.[\w.]+: expected a Graph, got str 'model.onnx': "
                                             r"graphmill\.load\(path\) reads a model file$"):
        call()
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("dims, needle", [({"N": -1}, "--dim N=-1: a size is an integer >= 0"),
                                          ({"N": 2.5}, "--dim N=2.5: a size is an integer >= 0"),
                                          ({"N": "a"}, "--dim N='a': a size is an integer >= 0"),
                                          (5, "dims must be a dict of symbol names to sizes, got int")])
def test_inspect_takes_the_sizes_the_cli_takes(small, dims, needle):
    """-1 counted -2,892,800 MACs and 2.5 half a batch more; 'a' was a bare ValueError."""
    with pytest.raises(UserInputError, match="^" + needle.replace("(", r"\(").replace(")", r"\)") + "$"):
        graphmill.inspect(small, dims=dims)
    n2 = graphmill.inspect(small, dims={"N": 2})["macs"]
    assert n2 == 2 * graphmill.inspect(small, dims={"N": np.int64(1)})["macs"] > 0


def test_a_comparison_refuses_a_tolerance_no_comparison_can_meet(small):
    """rtol=-1 reported identical outputs as different (Comparison(ok=False) with max_abs 0)."""
    with pytest.raises(UserInputError, match=r"^--rtol -1: a tolerance must be a finite number >= 0$"):
        ortb.compare(small, small, rtol=-1)
    with pytest.raises(UserInputError, match=r"^--atol nan: a tolerance"):
        ortb.compare(small, small, atol=float("nan"))
    assert ortb.compare(small, small).ok


def test_optimize_takes_one_exactness_level_as_a_string(small):
    """allow="float-reassociating" was split into its letters ("unknown exactness level(s) ['a', 'e', ...]");
    the CLI's --allow L is allow=["float-reassociating", L] (the docstring says so)."""
    as_list = graphmill.optimize(small.copy(), "ort", allow=["float-reassociating"], compare=False)
    as_str = graphmill.optimize(small.copy(), "ort", allow="float-reassociating", compare=False)
    assert as_str.after["nodes"] == as_list.after["nodes"] < as_list.before["nodes"]
    with pytest.raises(UserInputError, match=r"unknown exactness level\(s\) \['approxmate'\]"):
        graphmill.optimize(small.copy(), "ort", allow="approxmate", compare=False)


def test_a_misspelled_zoo_option_is_named_with_the_nearest():
    """It was Python's TypeError naming the internal builder (``resnet() got an unexpected keyword argument``)."""
    with pytest.raises(UserInputError, match=r"^zoo model 'resnet18': no option 'widht' \(did you mean 'width'\?\)$"):
        api.zoo_build("resnet18", widht=0.5)


def test_an_accelerator_that_is_neither_a_config_nor_a_path_is_named(small):
    """``simulate(g, 5)`` raised open()'s "expected str, bytes or os.PathLike object, not int" (an outside check)."""
    with pytest.raises(UserInputError, match=r"^accelerator: expected an AccelConfig, a dict in the TOML schema or a "
                                             r"TOML file's path, got int 5$"):
        graphmill.simulate(small, 5)


def test_a_pass_manager_refuses_a_context_that_is_not_one():
    """``run_passes(g, "dce", ctx=5)`` ran: no pass that changes nothing reads the context (an outside check)."""
    from graphmill.passes.manager import run_passes

    g = api.zoo_build("resnet18", width=0.25, resolution=32)
    with pytest.raises(TypeError, match="ctx must be a PassContext, got int 5"):
        run_passes(g, "dce", ctx=5)


@pytest.mark.parametrize("method", ["heft", "metis", "single"])
def test_options_for_a_heuristic_placement_are_refused_not_ignored(small, method):
    """``place(method="heft", options={...})`` ignored them without a word, where rl and learned refuse an
    unknown option (an outside check). Reference: the CLI's rule for --budget with a heuristic."""
    with pytest.raises(UserInputError, match=rf"^options \['samples'\]: only method rl, hierarchical or learned "
                                             rf"takes options; {method} is a heuristic that takes none$"):
        api.place(small, method=method, devices=2, options={"samples": 4}, dims={"N": 1})  # refused before any change


@pytest.mark.parametrize("path", [123, None, ["model.onnx"]])
def test_load_of_something_that_is_not_a_path_says_so(path):
    """``graphmill.load(123)`` raised os.fspath's bare TypeError (an outside check). Reference: the other API
    functions' wording for an argument of the wrong kind."""
    with pytest.raises(UserInputError, match=r"^graphmill\.load: expected a file path \(str or os\.PathLike\), got "):
        graphmill.load(path)


@pytest.mark.parametrize("options, needle", [({"samples": 4, 1: 2}, r"^options \['1', 'samples'\]: only method"),
                                             (1, r"^options: expected a dict of option names and values, got int$")])
def test_options_of_the_wrong_kind_are_refused_in_one_line(small, options, needle):
    """The refusal's own sorted() raised TypeError on keys of mixed kinds or on options that are no dict
    (a review). Reference: the other arguments' one-line refusals."""
    with pytest.raises(UserInputError, match=needle):
        api.place(small, method="heft", devices=2, options=options, dims={"N": 1})


def test_save_refuses_an_attribute_the_op_does_not_define(tmp_path):
    """``b.LeakyRelu(x, alpah=0.3)`` built and saved a file ONNX Runtime refuses ("Unrecognized attribute").
    Reference: onnx's own schema of LeakyRelu (its one attribute, alpha) and its checker, which refuses the file."""
    from graphmill.ir.builder import GraphBuilder

    b = GraphBuilder("typo")
    b.output(b.LeakyRelu(b.input("x", "float32", [2, 3]), alpah=0.3))
    out = tmp_path / "m.onnx"
    with pytest.raises(UserInputError, match=r"LeakyRelu node 'LeakyRelu_0': attribute 'alpah' \(did you mean "
                                             r"'alpha'\?\) is not one of LeakyRelu's \(opset 16\): alpha; not written"):
        graphmill.save(b.build(), out)
    assert not out.exists()


def test_learned_optimize_refuses_no_passes_and_place_a_report_it_cannot_fill(small):
    """passes=[] ended in an UnboundLocalError, and info=[] in an AttributeError after the whole placement had run
    and changed the graph (an outside check). Reference: the README's lists of passes; a dict to fill."""
    with pytest.raises(UserInputError, match=r"^passes: none given; choose from learned-optimize, "):
        api.learned_optimize(small.copy(), passes=[], devices=2, dims={"N": 1})
    g = small.copy()
    with pytest.raises(UserInputError, match=r"^graphmill\.place: info must be a dict to fill, got list$"):
        api.place(g, devices=2, info=[], dims={"N": 1})
    assert "placement" not in g.meta  # refused before any work


@pytest.mark.parametrize("call, needle", [
    (lambda g: graphmill.simulate(g, "examples/accelerators/edge.toml", scalesim_compat="no", dims={"N": 1}),
     "graphmill.simulate: scalesim_compat='no' must be True or False"),
    (lambda g: graphmill.optimize(g, compare="yes"), "graphmill.optimize: compare='yes' must be True or False"),
    (lambda g: graphmill.inspect(g, infer="no"), "graphmill.inspect: infer='no' must be True or False"),
    (lambda g: graphmill.place(g, devices=2, training="yes", dims={"N": 1}),
     "graphmill.place: training='yes' must be True or False"),
    (lambda g: graphmill.partition(g, stages=2, remat="no"), "graphmill.partition: remat='no' must be True or False"),
    (lambda g: api.learned_replay(g, decisions="no"), "graphmill.api.learned_replay: decisions='no' must be True or "
                                                      "False"),
    (lambda g: graphmill.infer_shapes(g, strict="no"), "graphmill.infer_shapes: strict='no' must be True or False"),
    (lambda g: api.train_policy("p.npz", quick="no"), "graphmill.api.train_policy: quick='no' must be True or False"),
])
def test_a_string_is_no_flag(small, call, needle, monkeypatch):
    """simulate(scalesim_compat="no") switched SCALE-Sim's arithmetic on (89,781 cycles became 113,697), and so did
    any string for the other flags, silently (an outside check). Reference: Python's bool, as the CLI's switches."""
    monkeypatch.chdir(ROOT)
    with pytest.raises(UserInputError, match="^" + needle.replace("(", r"\(").replace(")", r"\)") + "$"):
        call(small.copy())


def test_numpy_integers_are_counts(small):
    """np.int64(2) devices was refused as "--devices np.int64(2): must be an integer >= 1", which it is (an outside
    check). Reference: the same calls with Python ints."""
    want = graphmill.place(small.copy(), devices=2, dims={"N": 1})["makespan"]
    assert graphmill.place(small.copy(), devices=np.int64(2), budget=np.int32(0), dims={"N": 1})["makespan"] == want
    want = graphmill.partition(small.copy(), stages=2, microbatches=2)["bottleneck"]
    assert graphmill.partition(small.copy(), stages=np.int64(2), microbatches=np.uint8(2))["bottleneck"] == want


def test_a_schedule_may_be_a_pathlib_path_and_nothing_else_unexpected(small, tmp_path):
    """optimize(g, Path("s.mill")) and optimize(g, 123) raised "'PosixPath' object is not iterable" from the pass
    manager (an outside check). Reference: the docstring's forms of a schedule (a .mill path among them)."""
    import pathlib

    mill = tmp_path / "s.mill"
    mill.write_text("schedule default { dce }\n")
    assert graphmill.optimize(small.copy(), pathlib.Path(mill)).schedule_inline == "dce"
    with pytest.raises(UserInputError, match=r"^schedule 123: give a built-in schedule's name, inline text, "):
        graphmill.optimize(small.copy(), 123)


def test_save_takes_a_pathlib_weights_file_and_refuses_a_threshold_that_is_no_count(small, tmp_path):
    """external_data=Path("w.bin") was "bad argument type for built-in operation"; size_threshold="1" or None a
    bare TypeError, and -5 or 1.5 were taken (an outside check). Reference: the weights written to that file."""
    import pathlib

    graphmill.save(small, str(tmp_path / "m.onnx"), external_data=pathlib.Path("w.bin"), size_threshold=np.int64(0))
    assert (tmp_path / "w.bin").stat().st_size > 0
    np.testing.assert_array_equal(*(next(iter(g.initializers.values())).const.numpy()
                                    for g in (small, graphmill.load(str(tmp_path / "m.onnx")))))
    for bad in ("1", None, -5, 1.5):
        with pytest.raises(UserInputError, match=r"^graphmill\.save: size_threshold .*: must be an integer >= 0$"):
            graphmill.save(small, str(tmp_path / "n.onnx"), size_threshold=bad)
    assert not (tmp_path / "n.onnx").exists()


def test_more_calls_refuse_what_they_cannot_take(small, tmp_path):
    """learned_optimize(passes=None) and train(None) were bare TypeErrors; a numpy budget of a search method and a
    numpy divisor of scale were refused as not integers (a review). Reference: the docstrings' argument types."""
    with pytest.raises(UserInputError, match=r"^passes=None: a learned pass's name or a list of them$"):
        api.learned_optimize(small.copy(), passes=None, devices=2, dims={"N": 1})
    with pytest.raises(UserInputError, match=r"^graphmill\.api\.train: model None must be a zoo name, "):
        api.train(None, out=str(tmp_path / "t"))
    with pytest.raises(UserInputError, match=r"^--budget np\.int64\(0\): must be an integer >= 1$"):
        api.search_method("nahas", out=str(tmp_path / "n"), budget=np.int64(0))
    assert api.scale(small.copy(), phi=1, divisor=np.int64(8)) == api.scale(small.copy(), phi=1, divisor=8)
    assert not list(tmp_path.iterdir())
