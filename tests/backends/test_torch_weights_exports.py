"""Which initializers to_torch trains, on exporters' own forms of common layers. Reference: torch eager on the
module that was exported: its parameter sizes, and its output after one SGD step taken by both (an SGD step is
elementwise, so an exporter's slicing or concatenation of a parameter gives the same step). Before the fix each
of these froze some of the module's parameters without a word (an outside check): a learned position table
sliced to the sequence length, LayerNorm written out by the TorchScript exporter below opset 17, and torch
dynamo's unoptimized export of GroupNorm (CastLike before its Mul) and of LSTM/GRU (W, R, B assembled from
Slices of the PyTorch weights). A review then found the first fix training buffers PyTorch keeps fixed (the
tutorial's sinusoidal encoding sliced to the length, rotary cos/sin tables, a sliced causal mask): a sliced
table is as often one as the other, so plain files keep it fixed and from_torch records which is which."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import graphmill  # noqa: E402
from graphmill.backends.torch import weight_initializers  # noqa: E402
from tests.support.training import one_sgd_step_each  # noqa: E402


class SlicedPositions(nn.Module):
    """GPT/BERT-style learned positions, sliced to the input's length."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 16, 8))
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x + self.pos[:, : x.shape[1]])


class NormThenLinear(nn.Module):
    def __init__(self, norm: nn.Module, width: int):
        super().__init__()
        self.norm, self.fc = norm, nn.Linear(width, 2)

    def forward(self, x):
        return self.fc(self.norm(x))


class ConvGroupNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.norm, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).mean((2, 3)))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = nn.GRU(12, 5, batch_first=True)
        self.fc = nn.Linear(5, 2)

    def forward(self, x):
        return self.fc(self.gru(self.lstm(x)[0])[0])


class SinusoidalEncoding(nn.Module):
    """PyTorch's tutorial PositionalEncoding: a buffer sliced to the input's length, added."""

    def __init__(self, d: int = 8, length: int = 16):
        super().__init__()
        pe = torch.zeros(1, length, d)
        pos = torch.arange(length).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        pe[0, :, 0::2], pe[0, :, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe)
        self.fc = nn.Linear(d, 2)

    def forward(self, x):
        return self.fc(x + self.pe[:, : x.shape[1]])


class RotaryAndMask(nn.Module):
    """Rotary cos/sin buffers cut to the length and gathered by position (HF Llama 4.3x), and an additive causal
    mask buffer cut to the length and scaled before the softmax."""

    def __init__(self, d: int = 8, length: int = 16):
        super().__init__()
        self.q = nn.Linear(d, d)
        freq = torch.outer(torch.arange(length).float(), 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d)))
        self.register_buffer("cos_cached", torch.cat([freq, freq], -1).cos())
        self.register_buffer("sin_cached", torch.cat([freq, freq], -1).sin())
        self.register_buffer("mask", torch.triu(torch.full((length, length), -1e4), 1))

    def forward(self, x):
        t = x.shape[1]
        positions = torch.arange(t).unsqueeze(0)
        q = self.q(x)
        h = q.shape[-1] // 2
        rotated = torch.cat([-q[..., h:], q[..., :h]], -1)
        q = q * self.cos_cached[:t][positions] + rotated * self.sin_cached[:t][positions]
        scores = ((q @ q.transpose(1, 2)) + self.mask[:t, :t]) * 0.35
        return scores.softmax(-1) @ x


def _nonzero_norm(module: nn.Module) -> nn.Module:
    """Scales and biases away from their initial ones and zeros, so that an exporter cannot share them."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.startswith("norm."):
                p.copy_(torch.linspace(0.5, 1.5, p.numel()).reshape(p.shape) + (name.endswith("bias") * 0.3))
    return module


def _export(module: nn.Module, x: torch.Tensor, path, **kwargs) -> graphmill.Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), input_names=["x"], **kwargs)
    return graphmill.load(str(path))


def _check_trains_like_eager(module: nn.Module, g: graphmill.Graph, x: torch.Tensor) -> None:
    lowered = graphmill.to_torch(g)
    assert sum(p.numel() for p in lowered.parameters()) == sum(p.numel() for p in module.parameters()
                                                               if p.requires_grad)
    target = torch.randn(module(x).shape, generator=torch.Generator().manual_seed(1))
    want, got = one_sgd_step_each(module, lowered, x, target)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [SinusoidalEncoding, RotaryAndMask])
def test_buffers_cut_to_length_stay_fixed(tmp_path, make):
    torch.manual_seed(0)
    m, x = make().eval(), torch.randn(3, 10, 8)
    buffers = {n for n, _ in m.named_buffers()}
    g = _export(m, x, tmp_path / "m.onnx", opset_version=17, dynamo=False, do_constant_folding=False,
                dynamic_axes={"x": {0: "N", 1: "T"}})
    assert buffers <= set(g.initializers) and not buffers & weight_initializers(g)
    _check_trains_like_eager(m, g, x)
    g = graphmill.from_torch(m, x)
    assert not buffers & weight_initializers(g)
    _check_trains_like_eager(m, g, x)


def test_from_torch_records_parameters_and_buffers_and_a_saved_file_keeps_them(tmp_path):
    """A learned table and a buffer sliced alike: from_torch says which is which (graph.meta), and the saved file
    carries it, so `graphmill train` of that file trains what the module trains."""
    torch.manual_seed(0)

    class Both(SlicedPositions):
        def __init__(self):
            super().__init__()
            self.register_buffer("pe", torch.randn(1, 16, 8))

        def forward(self, x):
            return super().forward(x + self.pe[:, : x.shape[1]])

    m, x = Both().eval(), torch.randn(3, 10, 8)
    g = graphmill.from_torch(m, x)
    assert {"pos", "fc.bias"} <= weight_initializers(g) and "pe" not in weight_initializers(g)
    m.pos.requires_grad_(False)  # a frozen parameter: torch keeps it fixed, and so does the lowered module
    assert "pos" not in weight_initializers(graphmill.from_torch(m, x))
    m.pos.requires_grad_(True)
    graphmill.save(g, tmp_path / "m.onnx")
    again = graphmill.load(str(tmp_path / "m.onnx"))
    assert weight_initializers(again) == weight_initializers(g)
    _check_trains_like_eager(m, again, x)


def test_sliced_position_table_trains():
    torch.manual_seed(0)
    m, x = SlicedPositions().eval(), torch.randn(3, 10, 8)
    g = graphmill.from_torch(m, x)
    assert "pos" in weight_initializers(g)
    _check_trains_like_eager(m, g, x)


def test_layer_norm_written_out_below_opset_17_trains_its_scale_and_bias(tmp_path):
    torch.manual_seed(0)
    m, x = _nonzero_norm(NormThenLinear(nn.LayerNorm(8), 8)).eval(), torch.randn(3, 5, 8)
    g = _export(m, x, tmp_path / "ln.onnx", opset_version=13, dynamo=False)
    assert "LayerNormalization" not in {n.op_type for n in g} and "ReduceMean" in {n.op_type for n in g}
    _check_trains_like_eager(m, g, x)


class RelativePositionBias(nn.Module):
    """A learned table indexed by two relative-offset buffers: dynamo writes the lookup as GatherND."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(5, 5, 2))
        i = torch.arange(3)
        self.register_buffer("rows", i[:, None] - i[None, :] + 2)
        self.register_buffer("cols", i[None, :] - i[:, None] + 2)

    def forward(self, x):
        return torch.softmax(x + self.table[self.rows, self.cols].permute(2, 0, 1), -1)


@pytest.mark.parametrize("make, shape", [(ConvGroupNorm, (2, 3, 6, 6)), (Recurrent, (2, 5, 4)),
                                         (RelativePositionBias, (4, 2, 3, 3))],
                         ids=["groupnorm", "lstm-gru", "gathernd-table"])
def test_dynamo_unoptimized_exports_train_every_parameter(tmp_path, make, shape):
    torch.manual_seed(0)
    m, x = make().eval(), torch.randn(*shape)
    if make is ConvGroupNorm:
        _nonzero_norm(m)
    g = _export(m, x, tmp_path / "m.onnx", dynamo=True, optimize=False)
    _check_trains_like_eager(m, g, x)


class ConstSlicedBuffer(nn.Module):
    """A buffer sliced by a Python constant: the exporter folded the Slice into a new initializer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("pe", torch.randn(1, 16, 8))
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(x + self.pe[:, :10])


class FrozenRecurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.lstm.requires_grad_(False)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.lstm(x)[0])


class TiedBiasFree(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
        self.b.weight = self.a.weight
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.b(torch.relu(self.a(x))))


class TwoNormsSecondFrozen(nn.Module):
    """Equal initial values: the exporter writes n2.weight = Identity(n1.weight)."""

    def __init__(self):
        super().__init__()
        self.n1, self.fc, self.n2 = nn.LayerNorm(8), nn.Linear(8, 8), nn.LayerNorm(8)
        self.n2.requires_grad_(False)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.n2(self.fc(self.n1(x))))


@pytest.mark.parametrize("make", [ConstSlicedBuffer, FrozenRecurrent, TiedBiasFree, TwoNormsSecondFrozen])
def test_from_torch_keeps_what_the_module_keeps_fixed_or_tied(make):
    """The exporter's constant folding wrote a buffer sliced by a constant, a frozen LSTM's reordered gates and a
    bias-free tied weight's transposes as new initializers no module name covered: they trained (a frozen LSTM's
    1,834 elements for torch's 170) and the tie came apart; a frozen copy (n2 = Identity(n1)) trained too (an
    outside check). from_torch exports without folding (fold-constants does it later) and records the copies'
    roles. Reference: the module's own trainable parameters and one SGD step taken by both."""
    torch.manual_seed(0)
    m, x = make().eval(), torch.randn(3, 10, 8)
    _check_trains_like_eager(m, graphmill.from_torch(m, x), x)


def test_cse_merging_a_trainable_weight_into_a_frozen_one_is_refused():
    """Two equal zero biases, the first frozen: cse keeps a.bias and records b.bias merged into it; the refusal
    looked at the survivor alone, which is fixed, so b.bias silently stopped training (a review). Reference: the
    module's own trainable parameters (b.bias among them) and the refusal the README promises."""
    from graphmill.ir import UserInputError

    class TwoBias(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
            for layer in (self.a, self.b):
                nn.init.zeros_(layer.bias)
            self.a.bias.requires_grad_(False)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    torch.manual_seed(0)
    g = graphmill.from_torch(TwoBias().eval(), torch.randn(3, 8))
    graphmill.optimize(g)
    with pytest.raises(UserInputError, match="weight 'a.bias' also stands for 'b.bias'"):
        graphmill.to_torch(g)
    # nothing trained, or only weights cse left alone: built (an outside check: trainable=[] was refused, so an
    # optimized graph could not even be run under torch); a merged weight named to train is refused as ever
    import onnxruntime as ort

    from graphmill.frontend.onnx_io import serialize_model

    x = torch.randn(3, 8)
    sess = ort.InferenceSession(b"".join(serialize_model(g)), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(graphmill.to_torch(g, trainable=[]).eval()(x).detach().numpy(), ref, atol=1e-6)
    graphmill.to_torch(g, trainable=["b.weight"])
    with pytest.raises(UserInputError, match="weight 'a.bias' also stands for 'b.bias'"):
        graphmill.to_torch(g, trainable=["a.bias"])


def test_a_fold_of_fixed_tensors_stays_fixed():
    """fold-constants wrote a frozen LSTM's reordered gates as new initializers with no role, and they trained
    again after optimize (278 elements for torch's 18; a review). A fold of fixed tensors is recorded as fixed.
    Reference: the module's own trainable parameters, after the schedule the README offers for training."""
    torch.manual_seed(0)
    m, x = FrozenRecurrent().eval(), torch.randn(3, 10, 8)
    g = graphmill.from_torch(m, x)
    graphmill.optimize(g, "fold-constants,simplify,dce")
    assert not any(n.startswith("lstm.") for n in weight_initializers(g))
    _check_trains_like_eager(m, g, x)


def test_to_torch_of_a_path_says_what_it_takes():
    """``to_torch("model.onnx")`` raised a bare AttributeError ('str' object has no attribute 'opset_imports'; an
    outside check). Reference: the documented signature, ``to_torch(graph)`` of a ``graphmill.Graph``."""
    from graphmill.ir import UserInputError

    with pytest.raises(UserInputError, match=r"to_torch takes a graphmill Graph \(graphmill.load\(path\) reads a "
                                             r"file\), got str 'model.onnx'"):
        graphmill.to_torch("model.onnx")


@pytest.mark.parametrize("padding_idx", [0, -1])
def test_an_embeddings_padding_row_gets_no_gradient_as_in_torch(tmp_path, padding_idx):
    """torch gives ``nn.Embedding(padding_idx=...)``'s row no gradient; ONNX's Gather cannot say so, and to_torch
    trained it (an outside check: one SGD step moved outputs by 1.4 on a scale of 1.6). from_torch records the row,
    a saved file keeps it. Reference: torch eager's gradient and its output after one SGD step."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(5, 3, padding_idx=padding_idx), nn.Linear(3, 2)).eval()
    x = torch.tensor([[0, 1, 4, 2], [4, 0, 3, 4]])
    graphmill.save(graphmill.from_torch(m, x), tmp_path / "m.onnx")
    g = graphmill.load(str(tmp_path / "m.onnx"))
    lowered = graphmill.to_torch(g)
    lowered(x).sum().backward()
    m(x).sum().backward()
    table = dict(lowered.named_parameters())[{v: k for k, v in lowered.param_names.items()}["0.weight"]]
    row = padding_idx % 5
    assert m[0].weight.grad[row].abs().sum() == 0 and table.grad[row].abs().sum() == 0
    np.testing.assert_allclose(table.grad.numpy(), m[0].weight.grad.numpy(), rtol=1e-6)
    m.zero_grad()
    _check_trains_like_eager(m, g, x)
