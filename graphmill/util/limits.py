"""Sizes no real model has: the limits that keep an untrusted model from exhausting memory.

A 4 KB file can declare a tensor of 2^40 elements, or a shape operand of 2^24 entries (a tensor of
rank 2^24): shape inference, random inputs and the registry would then allocate per element or per
dimension until the machine gives out. graphmill refuses such sizes where a model is loaded and
before anything is allocated from a declared shape.

* ``GRAPHMILL_MAX_ELEMENTS`` (default 2^31): elements of one tensor, and so also any one dimension.
  The largest tensors of real models (LLM embedding tables, ~2^30) fit. Also the parameters of a zoo
  model built with large width/depth multipliers (``graphmill.frontend.zoo.build``).
* ``GRAPHMILL_MAX_RANK`` (default 64, numpy's own maximum): dimensions of one tensor, and so the
  entries of a shape operand (Reshape's, Expand's, ConstantOfShape's).

* ``GRAPHMILL_MAX_RUN_BYTES`` (default 2 GiB): bytes of the random inputs graphmill makes to run a
  model under ONNX Runtime (``optimize``'s comparison, timing), together with the outputs the run
  will produce and the tensors of its largest operation, held at once (from their inferred shapes: a
  177-byte file's ``ConstantOfShape([2, 1e9])`` is 7.5 GiB). Each tensor may be within the per-tensor limit and the
  run still need more memory than the machine has (four 2^30-element inputs are 16 GiB), so the total
  is checked before anything is allocated.
* ``GRAPHMILL_MAX_SIM_BYTES`` (default 256 MiB): bytes of the word-address matrices the simulator
  builds for one array layer (SCALE-Sim's operand matrices: ifmap M x K, filter K x N, ofmap M x N,
  4 bytes a word); with the prefetch streams built from them, a layer at the budget peaks at about
  six times that (measured: a 4600^3 MatMul, 254 MB of matrices, 1.5 GB resident).

* ``GRAPHMILL_MAX_SUBGRAPHS`` (default 10,000): subgraphs (If/Loop/Scan bodies) in one model file. onnx's
  shape inference, which every command runs, is superlinear in them, inside C++ where Ctrl-C cannot stop it
  (measured: 8,000 If nodes, a 1 MB file, 6 s; 100,000, 14 MB, over 15 minutes). Real models have a few
  hundred at most.

* ``GRAPHMILL_MAX_INLINED_NODES`` (default 100,000): nodes of one model file with its model-local function calls
  expanded. onnx's shape inference and ONNX Runtime's session both expand them, inside C++ where neither Ctrl-C
  nor SIGTERM stops them (a 2.6 KB file of 40 functions each calling the next twice expands to 2^40 calls: it
  ran 12 minutes until killed; ORT's session alone took 31 s at 98,000 nodes and over 10 minutes at 786,000, a
  review). Real models (BERT-large ~3,000 nodes, GPT-2 XL ~10,000) stay far below.

* ``GRAPHMILL_MAX_LOOP_ITERATIONS`` (default 10^6): a ``Loop``'s constant trip count in a model graphmill runs
  under ONNX Runtime (``optimize``'s comparison, ``--check-numerics``, timing). ONNX Runtime's run is C++ that
  Ctrl-C cannot stop: a 300-byte file looping 10^12 times ran until killed. Exported loops run over a sequence,
  thousands of steps at most.

All are read from the environment on every check, so a user with a larger model raises them for one
command (``GRAPHMILL_MAX_ELEMENTS=8589934592 graphmill inspect big.onnx``).
"""

from __future__ import annotations

import os

DEFAULT_MAX_ELEMENTS = 2**31
DEFAULT_MAX_RANK = 64
DEFAULT_MAX_RUN_BYTES = 2 * 2**30
DEFAULT_MAX_SIM_BYTES = 256 * 2**20
DEFAULT_MAX_SUBGRAPHS = 10_000
DEFAULT_MAX_INLINED_NODES = 100_000
DEFAULT_MAX_LOOP_ITERATIONS = 10**6


MAX_SEED = 2**32 - 1


def check_seed(seed, flag: str = "--seed") -> int:
    """A seed every consumer takes: numpy's generators refuse a negative one and METIS (run as a placement
    baseline) one past 64 bits, each as a traceback; 32 bits is what all of them accept."""
    from graphmill.util.errors import UserInputError

    if isinstance(seed, bool) or not hasattr(seed, "__index__") or not 0 <= int(seed) <= MAX_SEED:
        raise UserInputError(f"{flag} {seed!r}: must be an integer from 0 to {MAX_SEED}")
    return int(seed)


def check_count(value, flag: str, low: int = 0) -> int:
    """An integer >= ``low``, a numpy one too (a script's ``np.int64(4)`` devices was refused as "must be an integer
    >= 1", which it is: an outside check); returned as a Python int, as a library below may insist."""
    import numbers

    from graphmill.util.errors import UserInputError

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise UserInputError(f"{flag} {value!r}: must be an integer >= {low}")
    return int(value)


def check_flags(call: str, **flags) -> None:
    """Each flag True or False (numpy's too): a string is truthy, and ``simulate(..., scalesim_compat="no")``
    switched the option on without a word (an outside check)."""
    import numpy as np

    from graphmill.util.errors import UserInputError

    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise UserInputError(f"{call}: {name}={value!r:.40} must be True or False")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from graphmill.util.errors import UserInputError

        raise UserInputError(f"{name}={text!r}: must be a positive integer")
    return value


def max_elements() -> int:
    """Most elements one tensor may have (``GRAPHMILL_MAX_ELEMENTS``, default 2^31)."""
    return _env_int("GRAPHMILL_MAX_ELEMENTS", DEFAULT_MAX_ELEMENTS)


def max_rank() -> int:
    """Most dimensions one tensor may have (``GRAPHMILL_MAX_RANK``, default 64)."""
    return _env_int("GRAPHMILL_MAX_RANK", DEFAULT_MAX_RANK)


def max_run_bytes() -> int:
    """Most bytes of random inputs plus expected outputs of one run (``GRAPHMILL_MAX_RUN_BYTES``, 2 GiB)."""
    return _env_int("GRAPHMILL_MAX_RUN_BYTES", DEFAULT_MAX_RUN_BYTES)


def max_loop_iterations() -> int:
    """Most iterations of a Loop with a constant trip count in a model run under ONNX Runtime
    (``GRAPHMILL_MAX_LOOP_ITERATIONS``, 10^6)."""
    return _env_int("GRAPHMILL_MAX_LOOP_ITERATIONS", DEFAULT_MAX_LOOP_ITERATIONS)


def max_sim_bytes() -> int:
    """Most bytes of one layer's simulator address matrices (``GRAPHMILL_MAX_SIM_BYTES``, 256 MiB)."""
    return _env_int("GRAPHMILL_MAX_SIM_BYTES", DEFAULT_MAX_SIM_BYTES)


def max_inlined_nodes() -> int:
    """Most nodes one model file may hold with its function calls expanded (``GRAPHMILL_MAX_INLINED_NODES``,
    default 100,000)."""
    return _env_int("GRAPHMILL_MAX_INLINED_NODES", DEFAULT_MAX_INLINED_NODES)


def max_subgraphs() -> int:
    """Most subgraphs one model file may hold (``GRAPHMILL_MAX_SUBGRAPHS``, default 10,000)."""
    return _env_int("GRAPHMILL_MAX_SUBGRAPHS", DEFAULT_MAX_SUBGRAPHS)


def size_text(n: int) -> str:
    """``n`` bytes for a message: 8 GiB, 512 MiB, 3.5 KiB, 100 bytes."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def tensor_limits() -> tuple[int, int]:
    """``(max_rank(), max_elements())``, read once for a caller checking many shapes (``shape_problem``'s
    ``limits``): reading the environment twice per shape was a fifth of type inference."""
    return max_rank(), max_elements()


def shape_problem(shape, limits: tuple[int, int] | None = None) -> str | None:
    """Why a shape (ints, symbols or None entries) is beyond the limits (``limits``: ``tensor_limits()``, read
    now when not given), or None when it is not.

    Only the known dimensions count toward the element total: a symbol is bound later, and checked
    then (``random_inputs`` checks the sizes it is given)."""
    if shape is None:
        return None
    rank_limit, limit = limits if limits is not None else tensor_limits()
    if len(shape) > rank_limit:
        return f"rank {len(shape)}, more than the limit of {rank_limit} dimensions (GRAPHMILL_MAX_RANK)"
    total = 1
    for d in shape:
        if isinstance(d, int) and not isinstance(d, bool):
            if d > limit:  # on its own: a zero elsewhere makes the total 0, and numpy still refuses the dimension
                return f"{d} elements in one dimension, more than the limit of {limit} per tensor (GRAPHMILL_MAX_ELEMENTS)"
            total *= max(d, 0)
    if total > limit:
        return f"{total} elements, more than the limit of {limit} per tensor (GRAPHMILL_MAX_ELEMENTS)"
    return None
