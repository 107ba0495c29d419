"""``load_torch_checkpoint``: every checkpoint graphmill reads back (training, placement, learned policy and chip
placement runs) goes through it. Reference: torch's own ``torch.load(weights_only=True)`` refusals; what is
checked here is that each kind of bad file ends in one line in graphmill's words, never in torch's advice to load
the file with ``weights_only=False``, and that nothing in the file runs."""

from __future__ import annotations

import io
import pickle

import pytest

from graphmill.util.errors import UserInputError
from graphmill.util.files import load_torch_checkpoint

torch = pytest.importorskip("torch")

RAN: list[str] = []


class _Payload:
    def __reduce__(self):
        return (RAN.append, ("ran",))


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_a_checkpoint_of_tensors_and_plain_data_loads(tmp_path):
    path = tmp_path / "ok.pt"
    path.write_bytes(_saved({"w": torch.arange(4.0), "step": 3, "name": "x", "h": [1.5, None]}))
    got = load_torch_checkpoint(path, "a test checkpoint")
    assert torch.equal(got["w"], torch.arange(4.0)) and got["step"] == 3 and got["h"] == [1.5, None]


@pytest.mark.parametrize("kind, data, reason", [
    ("random bytes", bytes(range(256)) * 12, "not a torch.save file of tensors and plain data"),
    ("cut short", None, "damaged or cut short"),
    ("empty", b"", "an empty file"),
    ("pickled object", pickle.dumps({"model": _Payload()}), "tensors and plain data"),
    ("torch.save of an object", "object", "asks for the Python object"),
    ("text", b"hello world\n", "not a torch.save file"),
    ("numpy array", "numpy", "asks for the Python object numpy"),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
@pytest.mark.filterwarnings("error")  # torch's own warnings must not reach the user either
def test_bad_files_are_refused_in_one_line_without_running_anything(tmp_path, kind, data, reason):
    if data is None:
        data = _saved({"w": torch.ones(1000)})[:300]
    elif data == "object":
        data = _saved({"model": _Payload()})
    elif data == "numpy":
        import numpy as np

        data = _saved({"w": np.arange(3)})
    path = tmp_path / "bad.pt"
    path.write_bytes(data)
    RAN.clear()
    with pytest.raises(UserInputError) as err:
        load_torch_checkpoint(path, "a test checkpoint")
    text = str(err.value)
    assert "\n" not in text, kind
    assert text.startswith(f"{path}: ") and reason in text, text
    assert "weights_only" not in text, text  # torch's advice to unpickle is not passed on
    assert not RAN


def test_a_missing_file_is_left_to_the_caller(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_torch_checkpoint(tmp_path / "none.pt", "a test checkpoint")


def test_a_folder_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserInputError, match="cannot read a test checkpoint"):
        load_torch_checkpoint(tmp_path, "a test checkpoint")
