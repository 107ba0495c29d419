"""Shared fixtures. Tests name their reference: ONNX Runtime, the onnx wheel's test data, a published table."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

ONNX_DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
LIGHT = os.path.join(ONNX_DATA, "light")


def pytest_configure(config):
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # ORT's own error logs would drown the test output


@pytest.fixture(scope="session")
def light_dir() -> str:
    return LIGHT


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def resnet18_graph():
    """The zoo's ResNet-18 (batch 1). Tests must copy it before mutating."""
    from graphmill.frontend import zoo

    return zoo.build("resnet18", batch=1)
