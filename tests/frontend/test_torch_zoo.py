"""from_torch on torch.nn versions of the zoo's architectures (the benchmark's models, written from the
papers' block tables): ONNX Runtime on the imported graph equals torch eager, and to_torch of it equals
ONNX Runtime and trains every weight the exporter wrote. Reference: torch eager itself; tolerance max|diff| <= 1e-4 * max|ref| + 1e-6 (as the issue asks).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

import graphmill
from graphmill.backends import onnxruntime as ortb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def torch_models():
    spec = importlib.util.spec_from_file_location("torch_models", os.path.join(ROOT, "benchmarks", "torch_models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def close(ref: np.ndarray, got: np.ndarray) -> bool:
    return float(np.max(np.abs(ref - got))) <= 1e-4 * float(np.max(np.abs(ref))) + 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "efficientnet_b0", "vit_b16", "bert_base"])
def test_from_torch_then_to_torch_on_zoo_architectures(name):
    tm = torch_models()
    model, args = tm.build(name)
    with torch.no_grad():
        ref = model(*args)
    refs = [r.numpy() for r in (ref if isinstance(ref, (tuple, list)) else (ref,))]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        g = graphmill.from_torch(model, args)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    feeds = {v.name: a.numpy() for v, a in zip([v for v in g.inputs if not v.is_initializer], args)}
    outs = list(ortb.run(g, feeds).values())
    assert len(outs) == len(refs)
    for r, o in zip(refs, outs):
        assert close(r, o), (name, float(np.max(np.abs(r - o))))
    module = graphmill.to_torch(g).eval()
    # the legacy exporter writes the module's parameters and BatchNorm statistics (BatchNorm is no longer folded
    # into the convs: from_torch turns the exporter's eval peephole off) as the graph's floating initializers,
    # storing identical tensors once and giving each further user an Identity copy named after its parameter. So
    # to_torch trains one Parameter per torch parameter, copies included (zero biases, LayerNorm scales), and keeps
    # the running statistics as buffers. Reference: the torch module's own named_parameters(); a Linear's weight
    # that the exporter folded into its transpose keeps the exporter's name (onnx::MatMul_N)
    trained = set(module.param_names.values())
    torch_names = {n for n, _ in model.named_parameters()}
    assert len(trained) == len(torch_names), name
    assert all(n in torch_names or n.startswith("onnx::MatMul_") for n in trained), sorted(trained - torch_names)
    assert not any(n.endswith(("running_mean", "running_var")) for n in trained), name
    with torch.no_grad():
        back = module(*args)
    back = [b.numpy() for b in (back if isinstance(back, (tuple, list)) else (back,))]
    for o, b in zip(outs, back):
        assert close(o, b), (name, float(np.max(np.abs(o - b))))
