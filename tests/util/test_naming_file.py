"""util.errors.naming_file: a refusal of a file's contents raised past the loader names the file.

Reference: the messages written out here. Found by walk-throughs: `inspect`/`optimize` of a model whose sizes
exceed the limits said "Range node 'range': output ... would have 8589934592 elements" without the file, and a
pass refusing the model (PassInputError, whose constructor takes other arguments) could not be re-worded."""
from __future__ import annotations

import pytest

from graphmill.passes.manager import PassInputError
from graphmill.util.errors import UserInputError, naming_file


def test_contents_errors_get_the_file_and_keep_their_class():
    with pytest.raises(PassInputError) as e:
        with naming_file("m.onnx"):
            raise PassInputError("compound-scale", UserInputError("no stages found"))
    assert str(e.value) == "m.onnx: pass 'compound-scale' cannot run on this model: no stages found"
    assert e.value.pass_name == "compound-scale"


@pytest.mark.parametrize("message", ["--dim N=0: a size must be >= 1", "m.onnx: already named"])
def test_flag_errors_and_named_ones_are_left_alone(message):
    with pytest.raises(UserInputError) as e:
        with naming_file("m.onnx"):
            raise UserInputError(message)
    assert str(e.value) == message


def test_no_file_no_change():
    with pytest.raises(UserInputError, match="^Range node 'r': too big$"):
        with naming_file(None):
            raise UserInputError("Range node 'r': too big")


def test_naming_file_leaves_a_message_about_another_file_as_it_is(tmp_path):
    """``naming_file(model)`` prefixes a refusal of the model's contents with its path, and must not prefix one
    about another file the command read (a policy, a devices TOML at line:col). Reference: the messages."""
    from graphmill.util.errors import UserInputError, naming_file

    other = tmp_path / "devices.toml"
    other.write_text("")
    cases = [("graph 'g' has symbolic dimension(s) N", "m.onnx: graph 'g' has symbolic dimension(s) N"),
             (f"{other}:3:5: bad value", f"{other}:3:5: bad value"), (f"{other}: bad", f"{other}: bad"),
             ("--dim N=0: must be >= 1", "--dim N=0: must be >= 1"), ("m.onnx: x", "m.onnx: x"),
             ("gone.npz: no policy there", "gone.npz: no policy there"),  # a file named that does not exist
             ("Range node 'r': too large", "m.onnx: Range node 'r': too large")]
    for raised, said in cases:
        with pytest.raises(UserInputError) as e, naming_file("m.onnx"):
            raise UserInputError(raised)
        assert str(e.value) == said


def test_a_pass_refusing_another_file_it_reads_names_that_file_not_the_model():
    """``m.onnx: pass 'learned-optimize' cannot run on this model: p.npz: no policy there`` blamed the model for a
    missing policy (an outside check). Reference: the messages."""
    with pytest.raises(PassInputError) as e:
        with naming_file("m.onnx"):
            raise PassInputError("learned-optimize", UserInputError("p.npz: no policy there"))
    assert str(e.value) == "p.npz: no policy there (pass 'learned-optimize')"
    assert e.value.pass_name == "learned-optimize"
