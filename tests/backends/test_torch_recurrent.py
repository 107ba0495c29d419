"""The torch backend's LSTM, GRU and RNN. References: ONNX Runtime on the same graph (every variant the backend
claims: directions, layout 1, sequence_lens, initial states, peepholes, clip, linear_before_reset, Relu), and
torch eager for a module imported with from_torch (outputs, and one SGD step)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import graphmill  # noqa: E402
from graphmill.backends import onnxruntime as ortb  # noqa: E402
from graphmill.ir import UserInputError  # noqa: E402
from graphmill.ir.builder import GraphBuilder  # noqa: E402
from tests.support.training import one_sgd_step_each  # noqa: E402

T, BATCH, I, H = 5, 3, 4, 6
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_graph(kind: str, *, direction: str = "forward", layout: int = 0, lens: bool = False,
                    states: bool = False, peepholes: bool = False, opset: int = 14, **attrs):
    """One recurrent node with every output; its weights random, seeded."""
    rng = np.random.default_rng(0)
    d = 2 if direction == "bidirectional" else 1
    g = GATES[kind]
    b = GraphBuilder(kind.lower(), opset=opset)
    x = b.input("x", "float32", [BATCH, T, I] if layout else [T, BATCH, I])
    f = lambda *s: rng.normal(0, 0.5, s).astype(np.float32)  # noqa: E731
    ins = [x, b.const(f(d, g * H, I)), b.const(f(d, g * H, H)), b.const(f(d, 2 * g * H))]
    if lens or states or peepholes:
        ins.append(b.const(np.array([T, 0, 3], np.int32)) if lens else None)  # 0: ends in zeros, not its state
    n_states = 2 if kind == "LSTM" else 1
    if states or peepholes:  # drawn as [dir, batch, h] in both layouts, so that the two graphs hold equal values
        ins += [b.const(f(d, BATCH, H).transpose(1, 0, 2).copy() if layout else f(d, BATCH, H)) if states else None
                for _ in range(n_states)]
    if peepholes:
        ins.append(b.const(f(d, 3 * H)))
    outs = b.op(kind, *ins, outputs=1 + n_states, hidden_size=H, direction=direction, layout=layout, **attrs)
    for i, o in enumerate(outs):
        b.output(o, f"out{i}")
    return b.build()


CASES = [
    ("LSTM", {}), ("LSTM", {"direction": "reverse"}), ("LSTM", {"direction": "bidirectional", "lens": True}),
    ("LSTM", {"layout": 1, "states": True}), ("LSTM", {"peepholes": True, "states": True, "clip": 0.5}),
    ("LSTM", {"direction": "bidirectional", "layout": 1, "lens": True, "states": True}),
    ("GRU", {}), ("GRU", {"linear_before_reset": 1}), ("GRU", {"direction": "bidirectional", "lens": True}),
    ("GRU", {"layout": 1, "states": True, "direction": "reverse"}),
    ("RNN", {}), ("RNN", {"activations": ["Relu"], "direction": "reverse", "lens": True}),
    ("RNN", {"direction": "bidirectional", "states": True, "clip": 1.0}),
    ("GRU", {"activations": ["sigmoid", "tanh"], "lens": True, "states": True}),  # lowercase, as ONNX Runtime reads
]


@pytest.mark.parametrize("kind, options", CASES, ids=[f"{k}-{'-'.join(o) or 'plain'}" for k, o in CASES])
def test_recurrent_ops_equal_onnxruntime(kind, options):
    """ONNX Runtime refuses layout 1 (batch first): there the reference is the layout-0 graph of the same weights
    under ONNX Runtime, its input and outputs transposed."""
    g = recurrent_graph(kind, **options)
    x = np.random.default_rng(1).normal(0, 1, (T, BATCH, I)).astype(np.float32)
    layout = options.get("layout", 0)
    want = ortb.run(recurrent_graph(kind, **{**options, "layout": 0}), {"x": x},
                    ortb.OrtOptions(optimization="disabled"))
    if layout:
        x = x.transpose(1, 0, 2).copy()
        want = {k: v.transpose(2, 0, 1, 3) if v.ndim == 4 else v.transpose(1, 0, 2) for k, v in want.items()}
    module = graphmill.to_torch(g)
    with torch.no_grad():
        got = module(torch.from_numpy(x))
    for i, t in enumerate(got):
        np.testing.assert_allclose(t.numpy(), want[f"out{i}"], rtol=1e-5, atol=1e-5, err_msg=f"output {i}")
    # W, R, B (and P) are the trained weights
    assert len(module.param_names) == 4 if options.get("peepholes") else len(module.param_names) == 3


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_an_imported_recurrent_module_trains_like_the_original(kind):
    """from_torch then to_torch on a two-layer bidirectional batch-first layer: outputs, and one SGD step, equal
    torch eager's (the exporter concatenates torch's four tensors per direction into ONNX's W, R, B: an SGD step
    is elementwise, so it is the same step)."""
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(I, H, num_layers=2, bidirectional=True, batch_first=True)
            self.fc = torch.nn.Linear(2 * H, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    m = Net().eval()
    x, target = torch.randn(BATCH, T, I), torch.randn(BATCH, T, 2)
    want, got = one_sgd_step_each(m, graphmill.to_torch(graphmill.from_torch(m, x, dynamic_batch=False)), x, target)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs, needle", [
    ({"input_forget": 1}, "input_forget=1 is not supported"),
    ({"activations": ["HardSigmoid", "Tanh", "Tanh"]}, "activation 'HardSigmoid' .supported: Sigmoid, Tanh, Relu. is "
                                                        "not supported by the torch backend$"),
])
def test_unsupported_variants_are_refused_when_built(attrs, needle):
    with pytest.raises(UserInputError, match=needle):
        graphmill.to_torch(recurrent_graph("LSTM", **attrs))
