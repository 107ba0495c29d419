"""Reference architectures built from their papers' block tables, with seeded random weights.

``build(name, width=..., depth=..., resolution=..., batch=..., seed=...)`` builds one;
``MODELS`` maps names to builders and ``DESCRIPTIONS`` names to one-line descriptions.
Every model takes the ``width``, ``depth`` and ``resolution`` multipliers (see
``_common``: resolution below 16 is a multiplier, from 16 up a size in pixels) and
records its structure in node ``meta`` (``model_stage``, ``block``, ...; not ``stage``, which is the
pipeline stage ``pipeline-partition`` writes) and in ``graph.meta["stages"]`` / ``graph.meta["blocks"]``
(whose rows keep a ``stage`` field: ``node_meta(row)`` maps a row to node meta).
"""

from __future__ import annotations

import inspect
import numbers
from typing import Callable

from graphmill.ir import Graph, UserInputError
from graphmill.util.limits import check_seed
from graphmill.util.suggest import did_you_mean

from ._common import (MODEL_STAGE, RESOLUTION_SIZE_THRESHOLD, Layers, check_batch, check_count, check_positive,
                      mbconv, node_meta, resolve_resolution, round_filters, round_repeats)
from .efficientnet import COEFFICIENTS as EFFICIENTNET_COEFFICIENTS
from .efficientnet import efficientnet
from .efficientnetv2 import VARIANTS as EFFICIENTNETV2_VARIANTS
from .efficientnetv2 import efficientnetv2
from .coatnet import VARIANTS as COATNET_VARIANTS
from .coatnet import coatnet
from .mobilenet import mnasnet_a1, mobilenet_v2
from .resnet import resnet
from .transformer import bert, vit
from .inception import inception_v3
from .nmt import nmt, rnnlm
from .moe import MOE_MODELS, moe_lstm_lm, switch_transformer
from .transformer_seq2seq import transformer_seq2seq


def _efficientnet(variant: str) -> Callable[..., Graph]:
    return lambda **kw: efficientnet(variant, **kw)


def _efficientnetv2(variant: str) -> Callable[..., Graph]:
    return lambda **kw: efficientnetv2(variant, **kw)


def _coatnet(variant: int) -> Callable[..., Graph]:
    return lambda **kw: coatnet(variant, **kw)


def _resnet(name: str) -> Callable[..., Graph]:
    return lambda **kw: resnet(name, **kw)


MODELS: dict[str, Callable[..., Graph]] = {
    "resnet18": _resnet("resnet18"),
    "resnet34": _resnet("resnet34"),
    "resnet50": _resnet("resnet50"),
    "resnet101": _resnet("resnet101"),
    **{f"efficientnet_{v}": _efficientnet(v) for v in EFFICIENTNET_COEFFICIENTS},
    **{f"efficientnetv2_{v}": _efficientnetv2(v) for v in EFFICIENTNETV2_VARIANTS},
    **{f"coatnet_{v}": _coatnet(v) for v in COATNET_VARIANTS},
    "mnasnet_a1": mnasnet_a1,
    "mobilenet_v2": mobilenet_v2,
    "bert_base": bert,
    "vit_b_16": vit,
    "inception_v3": inception_v3,
    "nmt": nmt,
    "rnnlm": rnnlm,
    "transformer_seq2seq": transformer_seq2seq,
    "moe_lstm_lm": moe_lstm_lm,
    "switch_transformer": switch_transformer,
}

DESCRIPTIONS: dict[str, str] = {
    "resnet18": "ResNet-18 (He et al. 2015, Table 1): basic blocks [2,2,2,2], 224x224, 11.7M params",
    "resnet34": "ResNet-34 (He et al. 2015, Table 1): basic blocks [3,4,6,3], 224x224, 21.8M params",
    "resnet50": "ResNet-50 (He et al. 2015, Table 1): bottlenecks [3,4,6,3], 224x224, 25.6M params",
    "resnet101": "ResNet-101 (He et al. 2015, Table 1): bottlenecks [3,4,23,3], 224x224, 44.5M params",
    **{f"efficientnet_{v}": f"EfficientNet-{v.upper()} (Tan & Le 2019): B0 table scaled by width {w}, depth {d}, "
                            f"{r}x{r} input" for v, (w, d, r, _) in EFFICIENTNET_COEFFICIENTS.items()},
    **{f"efficientnetv2_{v}": f"EfficientNetV2-{v.upper()} (Tan & Le 2021): Fused-MBConv + MBConv stages, {r}x{r} "
                              f"input (trained at {t})" for v, (_, _, r, t, _) in EFFICIENTNETV2_VARIANTS.items()},
    **{f"coatnet_{v}": f"CoAtNet-{v} (Dai et al. 2021, Table 3): C-C-T-T, relative attention, blocks "
                       f"{'-'.join(map(str, n))}, channels {'-'.join(map(str, c))}, 224x224"
       for v, (n, c) in COATNET_VARIANTS.items()},
    "mnasnet_a1": "MnasNet-A1 (Tan et al. 2019, Figure 7): SepConv + MBConv stages with SE, 224x224, 3.9M params",
    "mobilenet_v2": "MobileNetV2 (Sandler et al. 2018, Table 2): inverted residuals, ReLU6, 224x224, 3.5M params",
    "bert_base": "BERT-base-like encoder (Devlin et al. 2018): 12 layers, hidden 768, 12 heads, int64 ids [N, S]",
    "vit_b_16": "ViT-B/16 (Dosovitskiy et al. 2020): 16x16 patches, 12 layers, hidden 768, 224x224, 86.6M params",
    "inception_v3": "Inception-V3 (Szegedy et al. 2016, Table 1): A/C/E blocks, 299x299, 23.8M params (no aux head)",
    "nmt": "NMT (Wu et al. 2016): 2-layer LSTM encoder-decoder, attention, 1024 units, unrolled 20 steps",
    "rnnlm": "RNN LM (Jozefowicz et al. 2016): 2-layer LSTM, 2048 units, 32k vocab, unrolled 20 steps, batch 64",
    "transformer_seq2seq": "Transformer base (Vaswani et al. 2017): 6+6 layers, hidden 512, 8 heads, 64 tokens",
    "moe_lstm_lm": "MoE LSTM LM (Shazeer et al. 2017): LSTM, noisy top-4 MoE of 16 experts, LSTM; 512 units, 20 steps",
    "switch_transformer": "Switch Transformer (Fedus et al. 2021): 4 layers, hidden 256, top-1 MoE FFN (8 experts) "
                          "every other layer",
}

ALIASES = {"bert": "bert_base", "vit": "vit_b_16", "mnasnet": "mnasnet_a1"}


def _canonical(name: str) -> str:
    """Lower case without separators: ``ResNet-50``, ``resnet_50`` and ``resnet50`` are one name."""
    return "".join(ch for ch in str(name).strip().lower() if ch not in "-_ ")


_BY_CANONICAL = {_canonical(n): n for n in [*MODELS, *ALIASES]}


def resolve_name(name: str) -> str:
    """The zoo's name for ``name``, or a UserInputError listing the names.

    Case, ``-`` and ``_`` are forgiven everywhere (``efficientnet-b0``, ``resnet-50``, ``vit-b-16``,
    ``MobileNet_V2``), as papers and other zoos spell them differently; a few short aliases
    (``bert``, ``vit``, ``mnasnet``) name the zoo's only model of that family.
    """
    key = _BY_CANONICAL.get(_canonical(name), str(name).strip().lower())
    key = ALIASES.get(key, key)
    if key not in MODELS:
        raise UserInputError(f"unknown zoo model {name!r}{did_you_mean(key, MODELS)}; "
                             f"known: {', '.join(sorted(MODELS))}")
    return key


GROWTH_CHECKED = 4.0
"""``depth * width**2`` above which ``build`` first counts the unscaled model's parameters (see ``_check_size``)."""


def build(name: str, **kwargs) -> Graph:
    """Build a zoo model by name (``graphmill zoo --list`` shows the names)."""
    key = resolve_name(name)
    if "seed" in kwargs:  # numpy's own error for seed=-1 named neither the model nor the option (an outside check)
        kwargs["seed"] = check_seed(kwargs["seed"], f"zoo model {key!r}: seed")
    takes = inspect.signature(MODELS[key]).parameters
    if "eps" in kwargs and ("eps" in takes or any(p.kind == p.VAR_KEYWORD for p in takes.values())):
        # an int became an INT epsilon attribute, which ONNX refuses at save (an outside check)
        eps = kwargs["eps"]
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= eps < float("inf"):
            raise UserInputError(f"zoo model {key!r}: eps {eps!r}: must be a finite number >= 0")
        kwargs["eps"] = float(eps)
    _check_size(key, kwargs)
    try:
        return MODELS[key](**kwargs)
    except TypeError as e:  # a misspelled option: Python's own error named the builder, not the model, nor a fix
        import re

        m = re.search(r"(\w+)\(\) got an unexpected keyword argument '([^']+)'", str(e))
        if not m:
            raise
        builder = globals().get(m.group(1))  # the builders MODELS calls are this module's names (imported above)
        known = [p for p in inspect.signature(builder).parameters if p != "variant"] if callable(builder) else []
        raise UnknownZooOption(key, m.group(2), did_you_mean(m.group(2), known)) from None


class UnknownZooOption(UserInputError):
    """An option the zoo model's builder does not take (``option``: its name), e.g. ``num_classes`` of a
    sequence model, which ``graphmill train`` reads as "not an image classifier"."""

    def __init__(self, model: str, option: str, hint: str = "") -> None:
        super().__init__(f"zoo model {model!r}: no option {option!r}{hint}")
        self.option = option


def _check_size(key: str, kwargs: dict) -> None:
    """Refuse, before building, multipliers whose model would exceed ``GRAPHMILL_MAX_ELEMENTS`` parameters. Why:
    ``--depth 1000`` of resnet18 allocated weights block by block until the kernel's out-of-memory killer ended
    it (24 GB resident, exit 137, no message), and ``--width 1e9`` failed only at numpy's allocation. The
    parameters grow at most as ``depth * width**2`` (only body stages deepen; widths are rounded): past
    ``GROWTH_CHECKED`` the unscaled model is built once and its count times that growth is the estimate."""
    from graphmill.ir.ops.infer import ModelTooLargeError
    from graphmill.util.limits import max_elements

    try:
        growth = float(kwargs.get("depth", 1.0)) * float(kwargs.get("width", 1.0)) ** 2
    except (TypeError, ValueError, OverflowError):
        return  # the builder refuses what is not a number, naming it
    if not growth > GROWTH_CHECKED:  # nan and the usual sizes alike
        return
    base = MODELS[key](**{k: v for k, v in kwargs.items() if k not in ("width", "depth")})
    params = sum(v.const.size for v in base.initializers.values() if v.const is not None)
    if params * growth > max_elements():
        raise ModelTooLargeError(
            f"{key} at width {kwargs.get('width', 1.0)!r}, depth {kwargs.get('depth', 1.0)!r}: about "
            f"{params * growth:.3g} parameters ({params:,} unscaled, times depth x width^2 = {growth:.3g}), more "
            f"than the limit of {max_elements():,} (GRAPHMILL_MAX_ELEMENTS)")


__all__ = ["build", "resolve_name", "UnknownZooOption", "MODELS", "DESCRIPTIONS", "resnet", "efficientnet",
           "mnasnet_a1", "mobilenet_v2", "bert", "vit", "efficientnetv2", "coatnet", "round_filters", "round_repeats",
           "check_positive",
           # block-building pieces other builders reuse (graphmill.search.spaces.mnasnet)
           "Layers", "mbconv", "check_batch", "check_count", "resolve_resolution",
           # a resolution below it is a multiplier of the native size, at or above it pixels
           "RESOLUTION_SIZE_THRESHOLD",
           # the node meta key of the architectural stage, and a table row as node meta
           "MODEL_STAGE", "node_meta"]
