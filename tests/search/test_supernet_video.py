"""3-D convolution and (2+1)-D video blocks on the IR (issue 15 item 4, the IR part).

References: ONNX Runtime on the saved graph against torch.nn.Conv3d/BatchNorm3d modules written here with the
same weights; MACs counted by hand; the simulator's cycles of a 3-D convolution against those of the 2-D
convolution it is lowered to (kt input frames stacked as channels, one per output frame), built by hand here;
R(2+1)D's parameter-matching formula (Tran et al. 2018) computed by hand.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import graphmill
from graphmill.ir.builder import GraphBuilder
from graphmill.search.evaluators.latency import simulated_latency
from graphmill.search.oneshot.video import r2plus1d_mid, video_net


def test_r2plus1d_mid_matches_the_paper_formula():
    # 3x3x3, 64 -> 64: floor(3*9*64*64 / (9*64 + 3*64)) = floor(110592 / 768) = 144 (R(2+1)D, Section 3.5)
    assert r2plus1d_mid(64, 64, 3, 3) == 144
    g = video_net([("2+1d", 64, 3, 3, 1)], frames=4, size=8, in_channels=64)
    conv_params = sum(v.const.numpy().size for n, v in g.initializers.items() if n.endswith(".w") and n != "fc.w")
    assert conv_params == 64 * 144 * 9 + 144 * 64 * 3  # 82,944 + 27,648 = 110,592 = the full 3x3x3 conv's
    assert conv_params == 64 * 64 * 27


def test_video_net_under_onnxruntime_equals_torch_conv3d(tmp_path):
    g = video_net([("3d", 8, 3, 3, 1), ("2+1d", 12, 3, 3, 2)], frames=6, size=8, num_classes=5, seed=3)
    path = tmp_path / "v.onnx"
    graphmill.save(g, path)
    w = {n: torch.from_numpy(v.const.numpy().copy()) for n, v in g.initializers.items()}

    def conv_bn(x, name, stride, pad):
        y = torch.nn.functional.conv3d(x, w[f"{name}.w"], None, stride, pad)
        y = torch.nn.functional.batch_norm(y, w[f"{name}.bn.mean"], w[f"{name}.bn.var"], w[f"{name}.bn.scale"],
                                           w[f"{name}.bn.bias"], False, 0.0, 1e-5)
        return torch.relu(y)
    x = torch.randn(2, 1, 6, 8, 8)
    y = conv_bn(x, "b0", 1, (1, 1, 1))
    y = conv_bn(y, "b1.spatial", (1, 2, 2), (0, 1, 1))
    y = conv_bn(y, "b1.temporal", (2, 1, 1), (1, 0, 0))
    ref = torch.nn.functional.linear(y.mean((2, 3, 4)), w["fc.w"], w["fc.b"]).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"clip": x.numpy()})[0], ref, rtol=1e-4, atol=1e-4)
    out = graphmill.to_torch(g)(x)
    np.testing.assert_allclose((out[0] if isinstance(out, (list, tuple)) else out).detach().numpy(), ref,
                               rtol=1e-4, atol=1e-4)


def _conv_graph(shape, wshape, kernel, pads, strides):
    b = GraphBuilder("c")
    x = b.input("x", "float32", shape)
    b.output(b.Conv(x, np.zeros(wshape, np.float32), kernel_shape=kernel, pads=pads, strides=strides), "y")
    return b.build()


def test_3d_conv_macs_and_simulated_cycles_equal_its_2d_lowering_by_hand():
    # [1, 4, T=6, 10, 10] * [8, 4, 3, 3, 3], pads 1, strides (1, 1, 1): output [1, 8, 6, 10, 10]
    g3 = _conv_graph([1, 4, 6, 10, 10], (8, 4, 3, 3, 3), [3, 3, 3], [1] * 6, [1, 1, 1])
    assert graphmill.inspect(g3)["macs"] == 8 * 6 * 10 * 10 * 4 * 27  # 518,400 by hand
    # the lowering by hand: per output frame (6 of them, the batch here) a 2-D conv with 4 x 3 stacked channels
    g2 = _conv_graph([6, 12, 10, 10], (8, 12, 3, 3), [3, 3], [1] * 4, [1, 1])
    assert simulated_latency(g3)["cycles"] == simulated_latency(g2)["cycles"] > 0
