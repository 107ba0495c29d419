"""Models quantized by ONNX Runtime's own tool (onnxruntime.quantization), a reference nobody here wrote, for
tests of what graphmill does with them."""
from __future__ import annotations

from typing import Any


def quantize_static(source: str, target: str, input_name: str, shape: tuple[int, ...], *, batches: int = 4,
                    seed: int = 0, **options: Any) -> None:
    """``onnxruntime.quantization.quantize_static`` of the model at ``source`` into ``target``, calibrated on
    ``batches`` seeded standard-normal inputs of ``shape``; ``options`` go to it (``quant_format=`` ...)."""
    import numpy as np
    from onnxruntime import quantization

    rng = np.random.default_rng(seed)

    class Calibration(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter([{input_name: rng.standard_normal(shape).astype(np.float32)} for _ in range(batches)])

        def get_next(self):
            return next(self.data, None)

    quantization.quantize_static(source, target, Calibration(), **options)
