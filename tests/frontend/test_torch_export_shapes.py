"""Shapes of what torch's exporter writes for common modules, against onnx's own inference and ONNX Runtime.

Found by an outside check with independently written PyTorch models: ``nn.Upsample(scale_factor=2)`` exports its
scales as a float ``Constant`` node, which graphmill's inference did not read (Resize "output shape is not
static": placement refused a U-Net); ``torch.arange(n)`` of a float ``n`` taken from a shape exports as
``Range`` over float Constants and a cast shape entry (refused likewise; rebuilt here by hand); and torch declares an output's
computed size as a symbol (``ReduceMeany_dim_0``) that inference kept over the number it computed, so a fully
static model was refused without ``--dim`` and ``--dim ReduceMeany_dim_0=32`` wrote a model declaring a size
the graph cannot have. References: ``onnx.shape_inference.infer_shapes(..., data_prop=True)`` for the inferred
shapes and ONNX Runtime for the outputs' real shapes.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import shape_inference

import graphmill
from graphmill import api
from graphmill.errors import UserInputError
from graphmill.frontend.onnx_shape_inference import infer_shapes
from graphmill.ir import TensorType


class UpsampleNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x):
        return self.up(self.conv(x)).relu()


def arange_model(path, *, pos_output: bool = False) -> str:
    """What torch.onnx.export writes for ``pos = torch.arange(n, dtype=float32)`` with ``n = t.shape[1]`` of a
    tensor whose shape the exporter cannot fold (the outside check's model: after PixelShuffle, GroupNorm and a
    reflect pad), then ``(t + pos).mean(1)``, written out here so that the test does not depend on when the
    exporter folds: Range over float Constants and a cast shape entry, and the output declared with torch's
    name for the computed size. ``pos_output``: the Range's result is an output too, for ONNX Runtime to
    measure (onnx's inference leaves it unknown)."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value), name))

    nodes = [const("zero", np.float32(0)), const("one", np.float32(1)), const("axis1", np.int64(1)),
             const("axes", np.array([1], np.int64)),
             helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "axis1"], ["n"]),
             helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
             helper.make_node("Range", ["zero", "nf", "one"], ["pos"]),
             helper.make_node("Unsqueeze", ["pos", "axes"], ["pos2"]),
             helper.make_node("Add", ["x", "pos2"], ["sum"]),
             helper.make_node("ReduceMean", ["sum"], ["y"], axes=[1], keepdims=0)]
    g = helper.make_graph(nodes, "arange", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["ReduceMeany_dim_0", 4])]
                          + ([helper.make_tensor_value_info("pos", TensorProto.FLOAT, None)] if pos_output else []))
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def _export(model: torch.nn.Module, x: torch.Tensor, path, **kw) -> str:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], **kw)
    return str(path)


def _shapes(graph) -> dict[str, tuple]:
    return {v.name: tuple(v.type.shape) for g in graph.all_graphs() for v in g.values()
            if isinstance(v.type, TensorType) and v.type.shape is not None}


def _onnx_shapes(path: str) -> dict[str, tuple]:
    m = shape_inference.infer_shapes(onnx.load(path), data_prop=True)
    out = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or None for d in dims)
    return out


def _ort_output_shape(path: str, x: np.ndarray, k: int = 0) -> tuple:
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[k].shape


@pytest.mark.parametrize("which", ["upsample", "arange"])
def test_every_shape_matches_onnx_and_the_output_ort(tmp_path, which):
    if which == "upsample":
        x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
        path, op = _export(UpsampleNet(), torch.from_numpy(x), tmp_path / "m.onnx"), "Resize"
    else:  # onnx's inference leaves Range's length unknown: ONNX Runtime measures it
        x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
        path, op = arange_model(tmp_path / "m.onnx", pos_output=True), None
    g = graphmill.load(path)
    infer_shapes(g)
    ours, ref = _shapes(g), _onnx_shapes(path)
    op_of = {v.name: n.op_type for n in g.nodes for v in n.outputs if v is not None}
    static = {k: v for k, v in ref.items() if all(isinstance(d, int) for d in v)}
    assert op is None or op in {op_of[k] for k in static if k in op_of}
    for name, dims in static.items():
        assert ours.get(name) == dims, (name, op_of.get(name), ours.get(name), dims)
    for k, out in enumerate(g.outputs):
        assert tuple(out.type.shape) == _ort_output_shape(path, x, k), out.name


def test_a_computed_output_size_is_no_symbol_to_bind(tmp_path):
    path = arange_model(tmp_path / "m.onnx")
    x = np.zeros((2, 5, 4), np.float32)
    # placed without --dim (the input fixes every size), the model keeps ORT's output shape
    g = graphmill.load(path)
    api.place(g, devices=2, method="heft")
    assert tuple(g.outputs[0].type.shape) == _ort_output_shape(path, x) == (2, 4)
    with pytest.raises(UserInputError, match="no symbolic dimension named 'ReduceMeany_dim_0'.*none"):
        api.place(graphmill.load(path), devices=2, method="heft", dims={"ReduceMeany_dim_0": 32})


def test_an_input_symbol_stays_a_symbol(tmp_path):
    """A dynamic batch is the model's free size: inference never fixes it, whatever the export's example."""
    path = _export(UpsampleNet(), torch.randn(2, 3, 8, 8), tmp_path / "m.onnx",
                   dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    g = graphmill.load(path)
    infer_shapes(g)
    assert tuple(g.outputs[0].type.shape) == ("N", 4, 16, 16)


def test_an_exporter_symbol_for_a_free_size_yields_to_it(tmp_path):
    """torch named an LSTM tagger's output batch `Addy_dim_0` (dynamic_axes only on the input's N): `place`
    asked for `--dim Addy_dim_0=32`, accepted it, and wrote a model declaring [32, 4] where the graph computes
    [8, 4] (an outside check). The output's batch is the input's N. Reference: ONNX Runtime's output shape."""
    from onnx import TensorProto, helper

    from graphmill import api
    from graphmill.errors import UserInputError

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Add", ["h", "x"], ["y"])],
                          "tagger", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["Addy_dim_0", 4])])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    graph = graphmill.load(path)
    infer_shapes(graph)
    assert tuple(graph.outputs[0].type.shape) == ("N", 4)
    with pytest.raises(UserInputError, match="no symbolic dimension named 'Addy_dim_0'"):
        api.place(graphmill.load(path), devices=2, method="single", dims={"N": 8, "Addy_dim_0": 32})
    assert _ort_output_shape(path, np.ones((8, 4), np.float32)) == (8, 4)


def test_a_free_size_declared_where_the_graph_computes_a_number_yields_to_it_and_is_reported(tmp_path):
    """torch's exporter declared a conv tap read on by a Flatten and a Gemm as [batch, 12, batch, ..] where the graph
    computes [batch, 12, 3, 5]; graphmill kept the declared batch and sized the Gemm's K from it (MACs 1,920 for
    2,520, simulate's K 60 for 180; learned-optimize wrote a model ONNX Runtime refused; an outside check). The
    number is what runs; the contradiction is a reported problem. Reference: ONNX Runtime's output shape and the
    MatMul's MACs by hand (N x 3 x 5)."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 5], [0.5] * 15)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["z"], name="relu"),
                           helper.make_node("MatMul", ["z", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5]),
                           helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", "N"])], [w])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = api.inspect_file(path, dims={"N": 4})
    assert report["macs"] == 4 * 3 * 5
    assert any("declared float32[N,N], inferred float32[N,3]" in p for p in report["problems"])
    graph = graphmill.load(path)
    infer_shapes(graph)
    assert tuple(graph.outputs[1].type.shape) == ("N", 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        assert sess.run(["z"], {"x": np.ones((4, 3), np.float32)})[0].shape == (4, 3)


def test_a_data_dependent_size_is_asked_for_naming_its_op(tmp_path):
    """Unique's output size depends on the data (ONNX Runtime's run shows it), so there is nothing to infer: the
    refusal names the op it stands for, not an input; an estimate given with ``dims`` places the model (an
    outside check: the message read as if the size were an input's)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("Unique", ["r"], ["u"], name="uniq", sorted=1)], "unc",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                          [helper.make_tensor_value_info("u", TensorProto.FLOAT, ["U"])])
    path = str(tmp_path / "u.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.array([1, 1, 2, 2, 3, 3], np.float32)})[0].shape == (3,)
    assert sess.run(None, {"x": np.array([1, 2, 3, 4, 5, 6], np.float32)})[0].shape == (6,)  # same shape in
    with pytest.raises(UserInputError, match="U is the data-dependent size of output 'u' of Unique node 'uniq'"):
        api.place(graphmill.load(path), devices=2, method="heft")
    placed = graphmill.load(path)
    api.place(placed, devices=2, method="heft", dims={"U": 4})
    assert tuple(placed.outputs[0].type.shape) == (4,)


def test_a_size_computed_from_a_data_dependent_one_asks_for_the_origin(tmp_path):
    """NonZero inside the graph, the output's size named by the exporter (K, from GatherND): the refusal asked for
    K and, K given, refused NonZero's unnamed count as 'not static', so the model could never be placed (an
    outside check). NonZero's count is now a symbol of its own, asked for first; given, inference computes K.
    Reference: ONNX Runtime's run (the output size follows the non-zero count)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("NonZero", ["r"], ["nz"], name="NZ"),
                           helper.make_node("Transpose", ["nz"], ["idx"], name="T"),
                           helper.make_node("GatherND", ["x", "idx"], ["y"], name="G")], "nzc",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["K"])])
    path = str(tmp_path / "nz.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.array([1, -1] * 8, np.float32)
    assert sess.run(None, {"x": x})[0].shape == (8,)
    with pytest.raises(UserInputError, match=r"symbolic dimension\(s\) nz_count: .*e.g. --dim nz_count=32; "
                                             "nz_count is the data-dependent size of output 'nz' of NonZero node 'NZ'"):
        api.place(graphmill.load(path), devices=2, method="heft")
    # K is the exporter's name for a size computed from the count: one name for one size (K and the count given
    # apart made contradictory shapes, a review)
    with pytest.raises(UserInputError, match="no symbolic dimension named 'K'; its symbols: nz_count"):
        api.place(graphmill.load(path), devices=2, method="heft", dims={"K": 8, "nz_count": 8})
    placed = graphmill.load(path)
    api.place(placed, devices=2, method="heft", dims={"nz_count": 8})
    assert tuple(placed.outputs[0].type.shape) == (8,)
    assert all(n.meta.get("device") is not None for n in placed.nodes)


def test_an_exporters_names_for_one_data_dependent_size_become_one(tmp_path):
    """torch's dynamo exporter names NonZero's count u0 on its output and u3 on a later one: both were asked for
    and --dim gave them different sizes, saving a model of contradictory shapes (a review). The file's own name
    for the count is kept (u0); the later one is computed from it. Reference: ONNX Runtime's run."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("NonZero", ["x"], ["nz"], name="NZ"),
                           helper.make_node("Transpose", ["nz"], ["idx"], name="T"),
                           helper.make_node("GatherND", ["x", "idx"], ["v"], name="G"),
                           helper.make_node("Mul", ["v", "v"], ["y"], name="M")], "dyn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["u3"])],
                          value_info=[helper.make_tensor_value_info("nz", TensorProto.INT64, [1, "u0"])])
    path = str(tmp_path / "dyn.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.array([1, 0] * 8, np.float32)
    assert ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0].shape == (8,)
    with pytest.raises(UserInputError, match=r"symbolic dimension\(s\) u0: "):
        api.place(graphmill.load(path), devices=2, method="heft")
    with pytest.raises(UserInputError, match="no symbolic dimension named 'u3'; its symbols: u0 \\(a name the file "
                                             "gives a size the graph computes takes that size, or the name of"):
        api.place(graphmill.load(path), devices=2, method="heft", dims={"u0": 8, "u3": 5})
    placed = graphmill.load(path)
    api.place(placed, devices=2, method="heft", dims={"u0": 8})
    assert tuple(placed.outputs[0].type.shape) == (8,)


EDGE = str(Path(__file__).resolve().parents[2] / "examples" / "accelerators" / "edge.toml")


class TileNet(torch.nn.Module):
    """``torch.tile`` with fewer repeats than dims: the exporter tests the rank in two Ifs (an outside check's
    model), whose outputs onnx's inference cannot know; simulate, place and partition refused the model."""

    def forward(self, x):
        return torch.tile(x, (2,)) * 2


def _ort_shapes(path: str, feeds: dict) -> dict[str, tuple]:
    """The shape ONNX Runtime computes for every top-level value (each made a graph output)."""
    import onnxruntime as ort

    m = onnx.load(path)
    names = [o for n in m.graph.node for o in n.output if o]
    del m.graph.output[:]
    m.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, feeds)
    return {n: tuple(a.shape) for n, a in zip(names, got)}


def test_an_if_on_a_rank_test_takes_its_branchs_shapes(tmp_path):
    """Propagation knows the rank test (Greater/Less of ``Size(Shape(x)) - 2``), so each If's outputs are its taken
    branch's and every size after it is static. Reference: the shape ONNX Runtime computes for every value."""
    x = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)
    path = _export(TileNet(), torch.from_numpy(x), tmp_path / "m.onnx")
    g = graphmill.load(path)
    assert sum(n.op_type == "If" for n in g.nodes) == 2
    infer_shapes(g)
    ours = {v.name: tuple(v.type.shape) for n in g.nodes for v in n.outputs
            if isinstance(v.type, TensorType) and v.type.shape is not None}
    ref = _ort_shapes(path, {"x": x})
    assert {k: ours.get(k) for k in ref} == ref
    report = api.simulate(graphmill.load(path), EDGE)
    assert not report.uncosted and report.total_cycles > 0
    placed = graphmill.load(path)
    api.place(placed, devices=2, method="heft")
    assert tuple(placed.outputs[0].type.shape) == (2, 4, 16)


def _branch_model(path, *, rank_test: bool) -> str:
    """y = x @ w (16x16) in the then branch, y = x in the else branch; the condition is ``rank(x) == 2`` (true:
    the MatMul runs) or a graph input (unknown)."""
    from onnx import TensorProto, helper, numpy_helper

    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Concat", ["x", "x"], ["e"], axis=1)], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="branch")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])]
    if rank_test:
        nodes[:0] = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Size", ["s"], ["r"]),
                     helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.int64(2))),
                     helper.make_node("Equal", ["r", "two"], ["c"])]
    else:
        inputs.append(helper.make_tensor_value_info("c", TensorProto.BOOL, []))
    w = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    g = helper.make_graph(nodes, "branch", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_an_if_costs_the_branch_its_known_condition_takes(tmp_path):
    """The simulator and inspect cost the MatMul of the branch a rank test takes (4*16*16 MACs), as the same MatMul
    written without the If; with an unknown condition inspect cannot say, and the output keeps what both branches
    agree on (onnx's rule: [4, ?], here against onnx's own inference)."""
    from onnx import TensorProto, helper, numpy_helper

    known = _branch_model(tmp_path / "known.onnx", rank_test=True)
    plain = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="branch/mm")], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.ones((16, 16), np.float32), "w")])
    onnx.save(helper.make_model(plain, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "plain.onnx"))
    assert api.inspect_file(known)["macs"] == 4 * 16 * 16
    ours = api.simulate(graphmill.load(known), EDGE)
    ref = api.simulate(graphmill.load(str(tmp_path / "plain.onnx")), EDGE)
    assert ours.total_cycles == ref.total_cycles > 0
    unknown = _branch_model(tmp_path / "unknown.onnx", rank_test=False)
    g = graphmill.load(unknown)
    infer_shapes(g)
    onnx_dims = _onnx_shapes(unknown)["y"]  # onnx names its unknown dim (unk__0)
    assert tuple(g.outputs[0].type.shape) == (4, None)
    assert onnx_dims[0] == 4 and len(onnx_dims) == 2 and not isinstance(onnx_dims[1], int)
    assert api.inspect(g)["ops_without_cost"] == {"If": 1}


def _position_table_model(path) -> str:
    """HF BERT's embeddings as the TorchScript exporter writes them: ``position_ids[:, :seq]`` of a [1, 16] buffer,
    looked up and added to the word embeddings, then a LayerNormalization whose output the exporter names
    ``LNy_dim_1`` (an outside check's BERT: the Slice's length was lost, so every size after it, and placement
    asked for that name as "data-dependent")."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value), name))

    rng = np.random.default_rng(0)
    nodes = [const("zero", np.array([0], np.int64)), const("one", np.array([1], np.int64)),
             const("i1", np.int64(1)), const("ax0", np.array([0], np.int64)),
             helper.make_node("Shape", ["ids"], ["s"]), helper.make_node("Gather", ["s", "i1"], ["seq_len"]),
             helper.make_node("Unsqueeze", ["seq_len", "ax0"], ["end"]),
             helper.make_node("Slice", ["pos", "zero", "end", "one", "one"], ["pos_ids"]),
             helper.make_node("Gather", ["pos_table", "pos_ids"], ["pe"]),
             helper.make_node("Gather", ["words", "ids"], ["we"]),
             helper.make_node("Add", ["we", "pe"], ["h"]),
             helper.make_node("LayerNormalization", ["h", "scale", "bias"], ["y"], axis=-1)]
    inits = [numpy_helper.from_array(np.arange(16, dtype=np.int64).reshape(1, 16), "pos"),
             numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "pos_table"),
             numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "words"),
             numpy_helper.from_array(np.ones(4, np.float32), "scale"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bias")]
    g = helper.make_graph(nodes, "bert_embeddings", [helper.make_tensor_value_info("ids", TensorProto.INT64,
                                                                                  ["batch", "seq"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "LNy_dim_1", 4])],
                          initializer=inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_a_table_cut_to_the_sequence_length_keeps_the_length(tmp_path):
    """The Slice is [1, Min(16, seq)], which broadcast beside [batch, seq] is seq: the output is [batch, seq, 4],
    the exporter's name yields to seq, and placement at batch 2, seq 5 declares ONNX Runtime's shape."""
    import onnxruntime as ort

    path = _position_table_model(tmp_path / "m.onnx")
    g = graphmill.load(path)
    infer_shapes(g)
    assert tuple(g.outputs[0].type.shape) == ("batch", "seq", 4)
    ids = np.array([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], np.int64)
    ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0].shape
    placed = graphmill.load(path)
    api.place(placed, devices=2, method="heft", dims={"batch": 2, "seq": 5})
    assert tuple(placed.outputs[0].type.shape) == ref == (2, 5, 4)
    with pytest.raises(UserInputError, match="no symbolic dimension named 'LNy_dim_1'; its symbols: batch, seq "):
        api.place(graphmill.load(path), devices=2, method="heft", dims={"batch": 2, "seq": 5, "LNy_dim_1": 3})


def test_a_size_inference_lost_upstream_is_not_called_data_dependent(tmp_path):
    """A Relu's output size is its input's: where an op without shape inference (a custom domain's) loses it, the
    refusal names that op as where sizes are lost, not the Relu's size as one the data decides; a size a Range
    computed from the data is data-dependent, and says which op it follows (a review). Reference: ONNX Runtime
    giving the Range model outputs of two sizes on two inputs of one shape."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def save(nodes, name, opsets, inits=()):
        g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["k"])], initializer=list(inits))
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets]), path)
        return path

    lost = save([helper.make_node("Foo", ["x"], ["f"], domain="com.example", name="foo"),
                 helper.make_node("Relu", ["f"], ["y"], name="relu")], "lost", [("", 17), ("com.example", 1)])
    with pytest.raises(UserInputError, match="k is the file's name for a size of output 'y' of Relu node 'relu' that "
                                             "shape inference could not compute \\(sizes are lost at com.example::Foo "
                                             "node 'foo'\\): give the size it has"):
        api.place(graphmill.load(lost), devices=2, method="heft")
    counted = save([helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0, name="max"),
                    helper.make_node("Cast", ["m"], ["n"], to=TensorProto.INT64, name="cast"),
                    helper.make_node("Range", ["zero", "n", "one"], ["r"], name="range"),
                    helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT, name="to_float"),
                    helper.make_node("Relu", ["rf"], ["y"], name="relu")], "counted", [("", 17)],
                   [numpy_helper.from_array(np.int64(0), "zero"), numpy_helper.from_array(np.int64(1), "one")])
    sess = ort.InferenceSession(counted, providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": np.full((2, 8), 5, np.float32)})[0].shape == (5,)
    assert sess.run(None, {"x": np.full((2, 8), 9, np.float32)})[0].shape == (9,)
    with pytest.raises(UserInputError, match="k is the data-dependent size of output 'y' of Relu node 'relu' \\(it "
                                             "follows Range node 'range'\\): give an estimate"):
        api.place(graphmill.load(counted), devices=2, method="heft")


def test_a_size_computed_in_float_stays_known(tmp_path):
    """HF MobileViT's ``int(math.ceil(h / p) * p)`` as the TorchScript exporter traced it: Cast to float, Div, Ceil,
    Mul, Cast back, then a Reshape to [N * C * h / 2, 2, w, 1] (inspect, simulate and place bind N first). Integer propagation stopped at the float Cast, and
    342 nodes of MobileViT had no shape (15% of its MACs uncounted; simulate refused it: an outside check).
    Reference: the shape ONNX Runtime computes for every value."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value), name))

    nodes = [const("i0", np.int64(0)), const("i1", np.int64(1)), const("i2", np.int64(2)), const("i3", np.int64(3)),
             const("two_f", np.float32(2.0)), const("two", np.int64(2)), const("ax0", np.array([0], np.int64)),
             const("tail", np.array([2, -1, 1], np.int64)),
             helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "i0"], ["n"]), helper.make_node("Gather", ["s", "i1"], ["c"]),
             helper.make_node("Gather", ["s", "i2"], ["h"]),
             helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["hf", "two_f"], ["half"]), helper.make_node("Ceil", ["half"], ["up"]),
             helper.make_node("Mul", ["up", "two_f"], ["nhf"]),
             helper.make_node("Cast", ["nhf"], ["nh"], to=TensorProto.INT64),
             helper.make_node("Mul", ["n", "c"], ["nc"]), helper.make_node("Mul", ["nc", "nh"], ["nch"]),
             helper.make_node("Div", ["nch", "two"], ["rows"]),
             helper.make_node("Unsqueeze", ["rows", "ax0"], ["rows1"]),
             helper.make_node("Concat", ["rows1", "tail"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    g = helper.make_graph(nodes, "float_sizes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 8, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 6)).astype(np.float32)
    model = graphmill.load(path)
    infer_shapes(model)
    ours = {v.name: tuple(v.type.shape) for n in model.nodes for v in n.outputs
            if v.name in ("r", "y") and isinstance(v.type, TensorType) and v.type.shape is not None}
    ref = _ort_shapes(path, {"x": x})
    assert ours == {"r": ref["r"], "y": ref["y"]} == {"r": (32, 2, 6, 1), "y": (32, 2, 6, 1)}


def test_an_if_on_a_loops_growing_state_is_not_known(tmp_path):
    """A Loop carries x, one row more each iteration; its body's If takes a MatMul once x has more than 2 rows. Typed
    with the first iteration's [1, 8], the rank test read as always false, and simulate costed no MatMul (a
    review). Reference: ONNX Runtime's outputs, which show the MatMul's branch taken from the third iteration on."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    w = nh.from_array(np.full((8, 8), 0.5, np.float32), "W")
    then_g = h.make_graph([h.make_node("MatMul", ["x_in", "W"], ["t_out"], name="mm")], "then", [],
                          [h.make_tensor_value_info("t_out", T.FLOAT, ["r", 8])])
    else_g = h.make_graph([h.make_node("Identity", ["x_in"], ["e_out"])], "else", [],
                          [h.make_tensor_value_info("e_out", T.FLOAT, ["r", 8])])
    body = h.make_graph([h.make_node("Shape", ["x_in"], ["sh"]), h.make_node("Gather", ["sh", "zero"], ["rows"]),
                         h.make_node("Greater", ["rows", "two"], ["c"]),
                         h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="If"),
                         h.make_node("Concat", ["x_in", "one_row"], ["x_out"], axis=0),
                         h.make_node("Identity", ["cond_in"], ["cond_out"]),
                         h.make_node("ReduceSum", ["y"], ["s"], keepdims=0)], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                         h.make_tensor_value_info("x_in", T.FLOAT, None)],
                        [h.make_tensor_value_info("cond_out", T.BOOL, []),
                         h.make_tensor_value_info("x_out", T.FLOAT, ["r1", 8]),
                         h.make_tensor_value_info("s", T.FLOAT, [])],
                        initializer=[nh.from_array(np.array(0, np.int64), "zero"),
                                     nh.from_array(np.array(2, np.int64), "two"),
                                     nh.from_array(np.ones((1, 8), np.float32), "one_row")])
    g = h.make_graph([h.make_node("Loop", ["M", "", "x0"], ["xf", "ss"], body=body, name="Loop_0")], "g",
                     [h.make_tensor_value_info("x0", T.FLOAT, [1, 8])],
                     [h.make_tensor_value_info("xf", T.FLOAT, ["R", 8]), h.make_tensor_value_info("ss", T.FLOAT, [6])],
                     initializer=[nh.from_array(np.array(6, np.int64), "M"), w])
    path = str(tmp_path / "loop_if.onnx")
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    sums = sess.run(None, {"x0": np.ones((1, 8), np.float32)})[1]
    assert sums[:2].tolist() == [8.0, 16.0] and sums[2] == 3 * 8 * 4.0  # the MatMul from the third iteration on
    report = api.simulate(graphmill.load(path), EDGE)
    assert any(layer.name.endswith("/then/mm") for layer in report.layers), [x.name for x in report.layers]


def test_the_untaken_branch_is_checked_by_its_types_alone(tmp_path):
    """A branch the condition rules out is not run, so sizes propagated into it from outside are none it has (the
    onnx corpus's affine_grid, which runs, was refused); but what its own types contradict, ONNX Runtime refuses
    on loading, and inspect says so (a review: a MatMul of [N, 4] by [3, 3] there went unsaid). Reference: ONNX
    Runtime refusing the model."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    then_g = h.make_graph([h.make_node("MatMul", ["x", "W"], ["t"])], "then", [],
                          [h.make_tensor_value_info("t", T.FLOAT, None)])
    else_g = h.make_graph([h.make_node("Identity", ["x"], ["e"])], "else", [],
                          [h.make_tensor_value_info("e", T.FLOAT, None)])
    g = h.make_graph([h.make_node("Shape", ["x"], ["s"]), h.make_node("Size", ["s"], ["r"]),
                      h.make_node("Equal", ["r", "three"], ["c"]),
                      h.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)], "untaken",
                     [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])], [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[nh.from_array(np.ones((3, 3), np.float32), "W"), nh.from_array(np.int64(3), "three")])
    path = str(tmp_path / "untaken.onnx")
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    with pytest.raises(Exception, match="Incompatible dimensions|inner"):
        ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    problems = api.inspect_file(path)["problems"]
    assert any("inner dimensions differ: 4 vs 3" in p for p in problems), problems


def test_a_slice_to_a_size_refuses_a_step_of_0_and_keeps_an_empty_table_empty(tmp_path):
    """Cut to a size (``t[:, :seq]``), a step of 0 crashed inference with a ZeroDivisionError (a review), and a
    [1, 0] table came out [1, Min(0, seq)], which is 0. References: ONNX Runtime's refusal and its shapes."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    def model(name, table, steps):
        nodes = [h.make_node("Shape", ["ids"], ["s"]), h.make_node("Gather", ["s", "one"], ["n"]),
                 h.make_node("Unsqueeze", ["n", "zero"], ["end"]),
                 h.make_node("Concat", ["end", "big"], ["ends"], axis=0),
                 h.make_node("Slice", ["table", "starts", "ends", "axes", "steps"], ["cut"])]
        inits = [nh.from_array(table, "table"), nh.from_array(np.array([0, 0], np.int64), "starts"),
                 nh.from_array(np.array([0, 1], np.int64), "axes"), nh.from_array(np.array(steps, np.int64), "steps"),
                 nh.from_array(np.int64(1), "one"), nh.from_array(np.array([0], np.int64), "zero"),
                 nh.from_array(np.array([5], np.int64), "big")]
        g = h.make_graph(nodes, name, [h.make_tensor_value_info("ids", T.INT64, ["B", "seq"])],
                         [h.make_tensor_value_info("cut", T.FLOAT, None)], initializer=inits)
        path = str(tmp_path / f"{name}.onnx")
        onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
        return path

    ids = np.zeros((2, 3), np.int64)
    step0 = model("step0", np.ones((16, 8), np.float32), [1, 0])
    with pytest.raises(Exception, match="step"):
        ort.InferenceSession(step0, providers=["CPUExecutionProvider"]).run(None, {"ids": ids})
    assert any("slice step cannot be 0" in p for p in api.inspect_file(step0)["problems"])
    empty = model("empty", np.ones((0, 8), np.float32), [1, 1])
    got = ort.InferenceSession(empty, providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0].shape
    g = graphmill.load(empty)
    infer_shapes(g)
    assert tuple(g.outputs[0].type.shape) == got == (0, 5)


def test_a_size_a_loop_body_declares_is_asked_for_at_the_loop(tmp_path):
    """tf2onnx writes a Keras GRU as a Loop whose state, fed as zeros [batch, 16], its body declares [unk__1192, 16]:
    the refusal called that size the data-dependent size of the MatMul reading the state (an outside check). It
    names the body's input and what the Loop feeds it. Reference: ONNX Runtime running the model, the state at the
    batch."""
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    body = h.make_graph([h.make_node("Identity", ["cond_in"], ["cond_out"]),
                         h.make_node("MatMul", ["state", "R"], ["m"], name="recur"),
                         h.make_node("Tanh", ["m"], ["state_out"])], "body",
                        [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("cond_in", T.BOOL, []),
                         h.make_tensor_value_info("state", T.FLOAT, ["unk__9", 4])],
                        [h.make_tensor_value_info("cond_out", T.BOOL, []),
                         h.make_tensor_value_info("state_out", T.FLOAT, ["unk__10", 4])])
    g = h.make_graph([h.make_node("Shape", ["x"], ["s"]), h.make_node("Slice", ["s", "zero", "one"], ["n"]),
                      h.make_node("Concat", ["n", "four"], ["shape"], axis=0),
                      h.make_node("Expand", ["one_f", "shape"], ["h0"]),
                      h.make_node("Loop", ["M", "", "h0"], ["h"], body=body, name="while")], "gru",
                     [h.make_tensor_value_info("x", T.FLOAT, ["unk__7", 3])],
                     [h.make_tensor_value_info("h", T.FLOAT, None)],
                     initializer=[nh.from_array(np.full((4, 4), 0.1, np.float32), "R"),
                                  nh.from_array(np.array([0], np.int64), "zero"),
                                  nh.from_array(np.array([1], np.int64), "one"),
                                  nh.from_array(np.array([4], np.int64), "four"),
                                  nh.from_array(np.float32(1.0), "one_f"), nh.from_array(np.int64(3), "M")])
    path = str(tmp_path / "loop.onnx")
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), path)
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": np.zeros((5, 3), np.float32)})
    assert got[0].shape == (5, 4)
    with pytest.raises(UserInputError, match="unk__9 is the file's name for a size of input 'state' of the body of "
                                             "Loop node 'while' \\(it feeds it float32\\[5,4\\]\\): give the size"):
        api.place(graphmill.load(path), devices=2, method="heft", dims={"unk__7": 5})
    placed = graphmill.load(path)
    api.place(placed, devices=2, method="heft", dims={"unk__7": 5, "unk__9": 5})
