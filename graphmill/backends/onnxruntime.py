"""ONNX Runtime as graphmill's numerical reference and latency meter.

Every transformation is judged by running the graph before and after under
ONNX Runtime on the same inputs; ``compare`` is that judgement. Timing reports
the median of N runs after warm-up, because one run of a small model on a
shared machine mostly measures noise.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from graphmill.frontend.onnx_export import node_to_proto, to_proto
from graphmill.ir import (DataType, ExecutionError, Graph, Node, ShapeInferenceError, TensorType, UserInputError,
                          Value)
from graphmill.passes.lowering import lowered_copy
from graphmill.ir.ops import infer_types
from graphmill.ir.control_flow import condition_may_end, loop_runs
from graphmill.ir.graph import node_reads
from graphmill.ir.rewrite import constant_through_views
from graphmill.util.limits import max_loop_iterations, max_run_bytes, shape_problem, size_text

_OPT_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass
class OrtOptions:
    """How to build an ONNX Runtime session.

    ``optimization`` is ORT's own graph optimization level: keep it "disabled"
    to measure the graph as graphmill left it, "all" to measure what users get.
    """

    provider: str = "CPUExecutionProvider"
    intra_op_threads: int = 0  # 0 = ORT's default (one per core)
    inter_op_threads: int = 0
    optimization: str = "all"
    # 4 = fatal only: ORT's errors reach the user as the exception graphmill turns into one line, and
    # its logger would print them again first, in colour, with a timestamp (warnings are noise too)
    log_severity: int = 4
    # ORT's CPU memory arena: off for the runs that check a model's outputs (``checking_options``), where speed does not
    # matter and memory does: an output array ORT returns is a view that keeps the arena's region alive, so a
    # comparison of two models held the first one's intermediates while the second ran (3.3 GB for one 1.6 GB
    # tensor: an outside check), and the arena grows by powers of two
    memory_arena: bool = True

    def session_options(self):
        import onnxruntime as ort

        _quiet_ort_logger(self.log_severity)

        if self.optimization not in _OPT_LEVELS:
            raise UserInputError(f"unknown ONNX Runtime optimization level {self.optimization!r}; "
                                 f"choose one of {', '.join(_OPT_LEVELS)}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = self.inter_op_threads
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[self.optimization])
        so.log_severity_level = self.log_severity
        so.enable_cpu_mem_arena = self.memory_arena
        return so


def checking_options(**changes) -> OrtOptions:
    """How graphmill's output checks (optimize's comparison, ``--check-numerics``) build their sessions: the graph
    as graphmill left it (ORT's own optimizations off), no memory arena."""
    return OrtOptions(optimization="disabled", memory_arena=False, **changes)


_LOGGER_SET = False


def _quiet_ort_logger(severity: int) -> None:
    """ORT's process-wide logger prints multi-line errors on stderr that our messages already carry."""
    global _LOGGER_SET
    if not _LOGGER_SET:
        import onnxruntime as ort

        ort.set_default_logger_severity(severity)
        _LOGGER_SET = True


def without_unread_nodes(graph: Graph) -> Graph:
    """``graph``, or a copy without the nodes none of whose outputs is named (in it or its subgraphs).

    ONNX lets a node omit every output (``Split(c, s) -> ['']``), and then nothing can read what it computes;
    ONNX Runtime 1.32 crashes with a segmentation fault running such a Split (an outside check: ``optimize`` died
    with no message while comparing). ONNX ops have no side effects, so leaving the node out changes no output."""
    def unread(g: Graph) -> list[Node]:
        return [n for n in g.nodes if all(o is None for o in n.outputs)]

    if not any(unread(g) for g in graph.all_graphs()):
        return graph
    copy = graph.copy()
    for g in copy.all_graphs():
        g.remove_nodes(unread(g))
    return copy


class OrtSession:
    """A graph compiled into an ONNX Runtime session, ready to run many times."""

    def __init__(self, graph: Graph, options: OrtOptions | None = None, *, model_bytes: bytes | None = None) -> None:
        """``model_bytes``: a serialized model to run instead of ``graph``'s export (the file ``graph`` was read
        from, as given: optimize's reference); ``graph`` still names it and bounds its loops."""
        import onnxruntime as ort

        self.graph = graph
        self.options = options or OrtOptions()
        available = ort.get_available_providers()
        if self.options.provider not in available:
            raise UserInputError(f"ONNX Runtime provider {self.options.provider!r} is not available here "
                                 f"(available: {', '.join(available)})")
        check_loop_iterations(graph)  # before ORT, whose run Ctrl-C cannot stop
        session_options = self.options.session_options()
        # graphmill-domain ops (MoE, relative attention, ...) run as their standard-ONNX lowering
        if model_bytes is None:
            model_bytes = to_proto(without_unread_nodes(lowered_copy(graph))).SerializeToString()
        try:
            self.session = ort.InferenceSession(model_bytes, session_options, providers=[self.options.provider])
        except Exception as e:  # noqa: BLE001 -- ORT raises several unrelated types
            raise ExecutionError(f"ONNX Runtime cannot load graph {graph.name!r}: {_one_line(e)}"
                                 f"{_graphmill_reason(graph)}") from e
        self._safe_shapes: set[tuple] = set()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
        feeds = _feeds(self.input_names, inputs)
        shapes = tuple(np.shape(a) for a in feeds.values())
        if shapes not in self._safe_shapes:  # timing loops run one shape many times: checked once
            crash = known_crash(self.graph, feeds)
            if crash:
                raise ExecutionError(f"ONNX Runtime 1.32 would crash the process (a segmentation fault) running "
                                     f"graph {self.graph.name!r}: {crash}; not run")
            self._safe_shapes.add(shapes)
        try:
            outs = self.session.run(None, feeds)
        except Exception as e:  # noqa: BLE001
            raise ExecutionError(f"ONNX Runtime failed running graph {self.graph.name!r}: {_one_line(e)}") from e
        return dict(zip(self.output_names, outs))


def _empty_extent(shape: Sequence[int]) -> bool:
    """Whether an InstanceNormalization input of this shape has data to normalize over an empty spatial extent, on
    which ONNX Runtime 1.32 crashes (``known_crash``)."""
    return len(shape) > 2 and 0 in shape[2:] and shape[0] * shape[1] > 0


def known_crash(graph: Graph, feeds: Mapping[str, Any]) -> str | None:
    """Why ONNX Runtime 1.32 would die (not fail) running ``graph`` on inputs of these shapes, or None: an
    InstanceNormalization over an empty spatial extent (``[N, C, 0]``, a torch export's ``x[:, :T // 2]`` at T = 1)
    crashed ``graphmill optimize`` with exit 139 and no message (an outside check's fuzzer). Sizes are inferred
    afresh from the feeds' shapes, only for graphs that hold such a node."""
    if not any(n.op_type == "InstanceNormalization" and n.domain in ("", "ai.onnx")
               for g in graph.all_graphs() for n in g.nodes):
        return None
    copy = graph.copy()
    for v in copy.inputs:
        if v.name in feeds and isinstance(v.type, TensorType):
            v.type = TensorType(v.type.dtype, tuple(int(d) for d in np.shape(feeds[v.name])))
    for g in copy.all_graphs():
        for n in g.nodes:
            for o in n.outputs:
                if o is not None and isinstance(o.type, TensorType):
                    o.type = TensorType(o.type.dtype, None)
    infer_types(copy)
    for n in (n for g in copy.all_graphs() for n in g.nodes if n.op_type == "InstanceNormalization"):
        x = n.input_at(0)
        shape = x.type.shape if x is not None and isinstance(x.type, TensorType) else None
        if shape and all(isinstance(d, int) for d in shape) and _empty_extent(shape):
            return (f"{n.describe()} normalizes over an empty spatial extent (input {list(shape)} at these input "
                    "sizes)")
    return None


def _graphmill_reason(graph: Graph) -> str:
    """graphmill's own shape inference's objection to ``graph``, as a suffix: ORT names the node of a lowering
    (``MoE_0/MatMul_18``), graphmill the op the user wrote and which of its inputs disagree."""
    try:
        infer_types(graph.copy(), strict=True)
    except ShapeInferenceError as e:
        return f"; graphmill's shape inference: {_one_line(e)}"
    except Exception:  # noqa: BLE001 -- only a better message is at stake; ORT's stands
        return ""
    return ""


def _one_line(e: BaseException, limit: int = 400) -> str:
    """ORT's message as one line: its first line alone cut "Got invalid dimensions for input: input for the
    following indices" before the indices, which its next lines give (an outside check)."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    if not text:
        return type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _feeds(names: list[str], inputs: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise UserInputError(f"missing input(s) {', '.join(missing)}; the graph needs {', '.join(names)}")
        return {n: inputs[n] for n in names}
    inputs = list(inputs)
    if len(inputs) != len(names):
        raise UserInputError(f"got {len(inputs)} inputs, the graph needs {len(names)}: {', '.join(names)}")
    return dict(zip(names, inputs))


def run(graph: Graph, inputs: Mapping[str, Any] | Sequence[Any], options: OrtOptions | None = None) -> dict[str, Any]:
    """Run ``graph`` once on numpy inputs; returns outputs by name."""
    return OrtSession(graph, options).run(inputs)


def random_inputs(graph: Graph, *, seed: int = 0, dims: Mapping[str, int] | None = None,
                  advice: str | None = "pass inputs explicitly") -> dict[str, np.ndarray]:
    """Seeded random data for every graph input that is not an initializer. ``advice`` ends the refusal of an
    input no data can be made for (a caller that takes no inputs gives its own, or None).

    Symbolic dims take their size from ``dims`` (default 1); floats are standard
    normal, integers lie in [0, 4) so they are valid indices for most ops.

    Before anything is allocated, the bytes of all inputs together with those of the outputs a run
    will produce (their declared shapes) are checked against ``GRAPHMILL_MAX_RUN_BYTES``
    (graphmill/util/limits.py): every tensor can be within the per-tensor limit and the run still
    need more memory than the machine has. Data is drawn in the input's own element type (no float64
    intermediate, which would double a float32 input's footprint).
    """
    rng = np.random.default_rng(seed)
    dims = dict(dims or {})
    init = {id(v) for v in graph.initializers.values()}
    wanted: list[tuple[Any, TensorType, tuple[int, ...]]] = []
    for v in graph.inputs:
        if id(v) in init:
            continue
        t = v.type
        if not isinstance(t, TensorType) or t.shape is None or not t.dtype:
            raise UserInputError(f"cannot make random data for input %{v.name} of type {t}"
                                 + (f"; {advice}" if advice else ""))
        shape = _bound_shape(t.shape, dims)
        too_big = shape_problem(shape)  # checked before numpy allocates: a declared 2^40 dim is a MemoryError
        if too_big:
            raise UserInputError(f"cannot make random data for input %{v.name} of shape {list(shape)}: {too_big}")
        wanted.append((v, t, shape))
    check_run_bytes(graph, dims)  # each tensor fits; all of them together, with the outputs, must too
    out: dict[str, np.ndarray] = {}
    for v, t, shape in wanted:
        dt = t.dtype
        if dt.is_floating:
            arr = _normal(rng, shape, dt.numpy())
        elif dt == DataType.BOOL:
            arr = rng.integers(0, 2, size=shape, dtype=np.bool_)
        elif dt.is_integer:
            npt = np.dtype(dt.numpy())
            high = _index_limit(v)
            arr = (rng.integers(0, high, size=shape, dtype=npt) if npt.kind in "iu"  # int4 & co. are not numpy's
                   else rng.integers(0, high, size=shape, dtype=np.int8).astype(npt))
        elif dt == DataType.STRING:
            arr = np.array(rng.choice(["a", "b", "c"], size=shape), dtype=object)
        else:
            raise UserInputError(f"cannot make random data for input %{v.name} of element type {dt.short_name}")
        out[v.name] = arr
    return out


#: ops an integer input reaches unchanged in value on its way to an index (a cast, a reshape)
_INDEX_VIEWS = frozenset({"Cast", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Expand"})
#: (op, index input) -> the input holding the table it indexes (along axis 0): ONNX Runtime's
#: EmbedLayerNormalization reads word rows by input_ids, segment rows by segment_ids, position rows by position_ids
_EMBEDDING_TABLES = {("EmbedLayerNormalization", 0): 2, ("EmbedLayerNormalization", 1): 4,
                     ("EmbedLayerNormalization", 8): 3}


def _index_limit(v: Value, default: int = 4) -> int:
    """Random integers lie in [0, this): ``default``, or fewer where ``v`` indexes a smaller table (a Gather's
    data along its axis, an EmbedLayerNormalization's), through casts and reshapes: BERT's 2-row token-type
    table made every comparison of a BERT export fail under ONNX Runtime (an outside check)."""
    limit, todo, seen = default, [v], set()
    while todo:
        u = todo.pop()
        if id(u) in seen:
            continue
        seen.add(id(u))
        for node, i in u.uses():
            table = None
            if node.op_type in _INDEX_VIEWS and i == 0:
                todo.extend(o for o in node.outputs if o is not None)
            elif node.op_type == "Gather" and i == 1:
                table, axis = node.input_at(0), int(node.attr("axis", 0))
            elif (node.op_type, i) in _EMBEDDING_TABLES:
                table, axis = node.input_at(_EMBEDDING_TABLES[node.op_type, i]), 0
            shape = table.type.shape if table is not None and isinstance(table.type, TensorType) else None
            if shape and -len(shape) <= axis < len(shape) and isinstance(shape[axis], int) and shape[axis] > 0:
                limit = min(limit, shape[axis])
    return limit


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Standard normal data of ``dtype``: drawn in place for float32/float64, else in float32 chunks."""
    out = np.empty(shape, dtype)
    if out.dtype in (np.float32, np.float64):
        rng.standard_normal(dtype=out.dtype, out=out)
        return out
    flat = out.reshape(-1)
    step = 2**22
    for i in range(0, flat.size, step):
        flat[i:i + step] = rng.standard_normal(min(step, flat.size - i), dtype=np.float32)
    return out


def _bound_shape(shape, dims: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else int(dims.get(d, 1)) if isinstance(d, str) else 1 for d in shape)


def _tensor_bytes(t: TensorType, dims: Mapping[str, int]) -> int:
    n = 1
    for d in _bound_shape(t.shape, dims):
        n *= max(d, 0)
    try:
        width = max(1, t.dtype.numpy().itemsize)
    except (AttributeError, TypeError, ValueError):
        width = 8  # strings: one object pointer each
    return n * width


def check_run_bytes(graph: Graph, dims: Mapping[str, int] | None = None) -> None:
    """Refuse, before anything is allocated, a run whose random inputs and expected outputs, with the operands of
    its largest node held at once, exceed ``GRAPHMILL_MAX_RUN_BYTES``; the message names the largest of them and
    the budget. The operands count because a 177-byte file computing ``ReduceMax(ConstantOfShape([2, 1e9]))``
    has tiny inputs and outputs and took 16 GB to run (an outside check); intermediates of unknown size are not
    counted."""
    dims = dict(dims or {})
    init = {id(v) for v in graph.initializers.values()}
    infer_types(graph)  # the intermediates' sizes: graphmill.load leaves a ConstantOfShape's output untyped

    def sized(v: Value, what: str) -> tuple[int, str] | None:
        t = v.type
        if isinstance(t, TensorType) and t.shape is not None and t.dtype:
            text = f"%{v.name} {list(_bound_shape(t.shape, dims))}"
            return _tensor_bytes(t, dims), (f"{text} ({what})" if what.startswith("an operand") else f"{what} {text}")
        return None

    ends = [x for kind, values in (("input", [v for v in graph.inputs if id(v) not in init]),
                                   ("output", graph.outputs)) for v in values if (x := sized(v, kind))]
    ends_ids = {id(v) for v in graph.inputs} | {id(v) for v in graph.outputs}
    widest: list[tuple[int, str]] = []  # the operands of the node that holds the most bytes at once
    for n in graph.all_nodes():  # a branch's operation too (If(ConstantOfShape bomb) went through)
        held = [x for v in dict.fromkeys(n.inputs + n.outputs) if v is not None and id(v) not in init
                and id(v) not in ends_ids and (x := sized(v, f"an operand of {n.describe()}"))]
        if sum(b for b, _ in held) > sum(b for b, _ in widest):
            widest = held
    parts = ends + widest
    total = sum(b for b, _ in parts)
    budget = max_run_bytes()
    if total <= budget:
        return
    parts.sort(key=lambda x: -x[0])
    named = ", ".join(f"{what} {size_text(b)}" for b, what in parts[:3]) + (", ..." if len(parts) > 3 else "")
    raise UserInputError(f"running the model on random inputs needs {size_text(total)} for its inputs, outputs and "
                         f"largest operation's tensors ({named}), more than the {size_text(budget)} budget "
                         "(GRAPHMILL_MAX_RUN_BYTES); skip the run (optimize --no-compare) or raise the budget")


def check_loop_iterations(graph: Graph) -> None:
    """Refuse a model with a Loop of more than ``GRAPHMILL_MAX_LOOP_ITERATIONS`` iterations (its trip count a
    constant, read through Identity/Cast/Reshape) or of none at all (no trip count, a condition that stays true),
    in the graph, its subgraphs or its functions: its run under ONNX Runtime is C++ that Ctrl-C cannot stop (a
    300-byte file looping 10^12 times ran until killed: an outside check). Checked when a session is built."""
    limit = max_loop_iterations()
    graphs = [*graph.all_graphs(), *(g for f in graph.functions.values() for g in f.graph.all_graphs())]
    for n in (n for g in graphs for n in g.nodes):
        if n.op_type != "Loop" or n.domain not in ("", "ai.onnx"):
            continue
        runs, _ = loop_runs(n)  # its count, or None: no count (no M, or M a bound its condition may end sooner)
        trips = constant_through_views(n.input_at(0))
        beyond = runs > limit if runs is not None else (
            trips is not None and trips.size == 1 and float(trips.reshape(-1)[0]) > limit and not condition_may_end(n))
        if beyond:  # (M beyond an int64 beneath a Cast, inf, has no count either: refused by its value)
            said = f"{runs:,}" if runs is not None else f"{float(trips.reshape(-1)[0]):,.0f}"
            raise UserInputError(f"{n.describe()} loops {said} times, more than the "
                                 f"{limit:,} of GRAPHMILL_MAX_LOOP_ITERATIONS a run under ONNX Runtime may take "
                                 "(Ctrl-C cannot stop it); skip the run (optimize --no-compare) or raise the limit")
        if n.input_at(0) is None:
            cond = n.input_at(1)
            start = constant_through_views(cond) if cond is not None else None
            body = n.attr("body")
            if (cond is None or (start is not None and start.size == 1 and bool(start.reshape(-1)[0]))) \
                    and isinstance(body, Graph) and not condition_may_end(n):
                raise UserInputError(f"{n.describe()} has no trip count and a condition that stays true: it never "
                                     "ends under ONNX Runtime (Ctrl-C cannot stop it); skip the run (optimize "
                                     "--no-compare)")


@dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    warmup: int

    def to_dict(self) -> dict:
        return asdict(self)


def time_graph(graph: Graph, inputs: Mapping[str, Any] | None = None, *, runs: int = 20, warmup: int = 3,
               options: OrtOptions | None = None, seed: int = 0) -> Timing:
    """Median latency of one inference, after ``warmup`` untimed runs."""
    feeds = dict(inputs) if inputs is not None else random_inputs(graph, seed=seed)
    return time_graphs([graph], feeds, runs=runs, warmup=warmup, options=options)[0]


def time_graphs(graphs: Sequence[Graph], inputs: Mapping[str, Any], *, runs: int = 20, warmup: int = 3,
                options: OrtOptions | None = None) -> list[Timing]:
    """``time_graph`` of several graphs on the same inputs, their runs interleaved (one of each in turn). Timed one
    after the other, a before/after pair measured the machine's drift too: the demo's optimized model came out
    slower than the original every time, though alternating runs found them equal (an outside check)."""
    if runs < 1:
        raise UserInputError("runs must be at least 1")
    sessions = [OrtSession(g, options) for g in graphs]
    feeds = dict(inputs)
    for _ in range(warmup):
        for sess in sessions:
            sess.run(feeds)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(runs):
        for sess, ts in zip(sessions, times):
            t0 = time.perf_counter()
            sess.run(feeds)
            ts.append((time.perf_counter() - t0) * 1e3)
    timings = []
    for ts in times:
        ts.sort()
        q = statistics.quantiles(ts, n=10) if len(ts) >= 2 else [ts[0]] * 9
        timings.append(Timing(statistics.median(ts), q[0], q[-1], runs, warmup))
    return timings


@dataclass
class OutputDiff:
    name: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""
    scale: float = 1.0  # what atol is multiplied by: max(1, the output's largest finite |value|)


@dataclass
class Comparison:
    """Outputs of two graphs on the same inputs. ``ok`` when every output is within tolerance."""

    ok: bool
    rtol: float
    atol: float
    outputs: list[OutputDiff] = field(default_factory=list)
    scale_atol: bool = False
    precision: list[str] = field(default_factory=list)  # float types compared at their own precision (below)
    computed_in: str = ""  # the narrowest float type wider outputs were computed through and compared at the
    # precision of (``compare_outputs``' ``computed_in``)

    @property
    def tolerance(self) -> str:
        """The criterion in words, as the reports print it."""
        scaled = "*max(1,max|ref|)" if self.scale_atol else ""
        return f"atol={self.atol:g}{scaled} + rtol={self.rtol:g}*|ref|{self.precision_note}"

    @property
    def precision_note(self) -> str:
        """The part of ``tolerance`` that says which outputs were compared at a narrower type's precision."""
        own = "".join(f", {t} outputs at least at {t}'s precision (rtol eps, atol eps*max|ref|, eps = "
                      f"{float(np.finfo(t).eps):g})" for t in self.precision)
        if self.computed_in:
            own += (f", wider float outputs computed through {self.computed_in} at least at its precision "
                    f"(eps = {NARROW_FLOAT_EPS[self.computed_in]:g})")
        return own

    @property
    def max_abs(self) -> float:
        return max((o.max_abs for o in self.outputs), default=0.0)

    @property
    def first_mismatch(self) -> OutputDiff | None:
        return next((o for o in self.outputs if not o.ok), None)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "rtol": self.rtol, "atol": self.atol, "tolerance": self.tolerance,
                "max_abs": self.max_abs,
                "outputs": [asdict(o) for o in self.outputs]}


def _largest_finite(x: np.ndarray) -> float:
    """The largest finite |value| of ``x`` (0 when it has none)."""
    finite = np.abs(x[np.isfinite(x)])
    return float(finite.max()) if finite.size else 0.0


def check_tolerances(rtol: float, atol: float) -> None:
    """A tolerance of -1 would fail every comparison (identical outputs reported different) and nan pass every
    one: refused as bad input, by every comparison (``compare_outputs``) and by ``optimize`` before any work."""
    for flag, tol in (("--rtol", rtol), ("--atol", atol)):
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol < 0:
            raise UserInputError(f"{flag} {tol}: a tolerance must be a finite number >= 0")


#: machine epsilon of the float types narrower than float32 a model may compute in (float16: 2^-10, bfloat16: 2^-7)
NARROW_FLOAT_EPS = {t.short_name: float(np.finfo(t.numpy()).eps) for t in (DataType.FLOAT16, DataType.BFLOAT16)}


def narrow_float_outputs(graph: Graph) -> dict[str, str]:
    """Each output of ``graph`` computed through a float type narrower than float32 (a tensor it depends on, an
    input, a weight or an intermediate, in any subgraph): its name -> the narrowest such type ("bfloat16" or
    "float16"). An output computed in float32 alone is left out, whatever the rest of the model does (an outside
    check: a float16 side branch loosened the comparison of a pure float32 output)."""
    out: dict[str, str] = {}
    for o in graph.outputs:
        found, todo, seen = set(), [o], set()
        while todo:
            v = todo.pop()
            if v is None or id(v) in seen:
                continue
            seen.add(id(v))
            if isinstance(v.type, TensorType) and v.type.dtype is not None:
                found.add(v.type.dtype.short_name)
            node = v.producer
            if node is None or node.op_type in ("Shape", "Size"):  # a size, not the data: read its type only
                continue
            if node.op_type == "Cast":  # an untyped file's float16 branch
                try:
                    found.add(DataType(int(node.attr("to"))).short_name)
                except (TypeError, ValueError):  # no or no valid `to`: inference names that
                    pass
            todo.extend(node_reads(node))
            for sub in node.subgraphs():
                todo.extend(sub.outputs)
        narrow = [name for name in NARROW_FLOAT_EPS if name in found]
        if narrow:
            out[o.name] = max(narrow, key=NARROW_FLOAT_EPS.__getitem__)
    return out


def compare_outputs(a: Mapping[str, Any], b: Mapping[str, Any], *, rtol: float, atol: float,
                    names: Sequence[str] | None = None, scale_atol: bool = False,
                    computed_in: Mapping[str, str] | None = None) -> Comparison:
    """Elementwise ``|a-b| <= atol + rtol*|a|`` per output, as ``numpy.allclose`` (NaNs must match NaNs); with
    ``scale_atol``, ``|a-b| <= atol*s + rtol*|a|``, ``s = max(1, max|a|)`` over that output's finite values.

    Why the optimizer's checks scale ``atol`` with the output's largest magnitude: float32 rounding in a sum grows
    with its terms, and an element that sums to near zero keeps the rounding of the large terms that cancelled.
    A pure per-element test flags such elements after any reassociation (folding a batch norm into its conv):
    ResNet-18 at width 0.25 has logits up to 76, and one of 0.14 moved by 4.7e-5, 6e-7 of the output's scale.
    Outputs of magnitude up to 1 are compared the same either way.

    A float type narrower than float32 is compared at its own precision, unless both tolerances are 0 (exact):
    ``rtol`` is at least the output type's machine epsilon ``eps`` (float16: 2^-10 = 9.8e-4) and the absolute
    term at least ``eps`` times the output's largest |value| (a unit in the last place of its largest element,
    the rounding a float16 sum keeps after cancelling terms), so one unit in the last place, which ONNX Runtime's
    own float16 kernels differ by from a correctly rounded result, is not a mismatch (an outside check: a float16
    Div folded exactly was "outputs differ" at the default rtol 1e-4). ``Comparison.tolerance`` says so.

    ``computed_in`` (``narrow_float_outputs`` of the reference graph: output name -> a key of
    ``NARROW_FLOAT_EPS``): such an output is computed through that type, so a wider float one is compared at that
    type's precision too: a float16 model converted with float32 inputs and outputs (``keep_io_types``) was
    "outputs differ" after a fold that moved a float16 intermediate by one unit (an outside check)."""
    check_tolerances(rtol, atol)
    diffs, precision, widened = [], [], []
    computed_in = computed_in or {}
    inexact = rtol > 0 or atol > 0
    for name in names if names is not None else list(a):
        if name not in b:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), False, "missing in the second graph"))
            continue
        narrow = computed_in.get(name, "")
        diffs.append(_output_diff(name, a.get(name), b[name], rtol, atol, scale_atol, precision,
                                  NARROW_FLOAT_EPS.get(narrow, 0.0)))
        value = a.get(name)
        if narrow and inexact and not isinstance(value, (list, tuple)) and value is not None and \
                np.asarray(value).dtype.kind == "f" and np.asarray(value).itemsize >= 4:
            widened.append(narrow)
    return Comparison(all(d.ok for d in diffs), rtol, atol, diffs, scale_atol, precision,
                      max(widened, key=NARROW_FLOAT_EPS.__getitem__) if widened else "")


def _output_diff(name: str, x: Any, y: Any, rtol: float, atol: float, scale_atol: bool,
                 precision: list[str], computed_eps: float = 0.0) -> OutputDiff:
    """One output's comparison (see ``compare_outputs``). ONNX Runtime gives an empty optional as None (two were
    "missing in the second graph", exit 1, for identical models) and a sequence as a list of arrays, which need
    not share a shape (``np.asarray`` of one failed with a traceback): compared element by element (outside
    checks)."""
    if x is None or y is None:
        same = x is None and y is None
        return OutputDiff(name, 0.0 if same else float("inf"), 0.0 if same else float("inf"), same,
                          "" if same else f"an empty optional in the {'first' if x is None else 'second'} graph only")
    if isinstance(x, (list, tuple)) or isinstance(y, (list, tuple)):
        if not (isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y)):
            return OutputDiff(name, float("inf"), float("inf"), False, "sequences of different lengths" if isinstance(
                x, (list, tuple)) and isinstance(y, (list, tuple)) else "a sequence in one graph only")
        parts = [_output_diff(name, u, v, rtol, atol, scale_atol, precision, computed_eps) for u, v in zip(x, y)]
        bad = next(((i, d) for i, d in enumerate(parts) if not d.ok), None)
        return OutputDiff(name, max((d.max_abs for d in parts), default=0.0), max((d.max_rel for d in parts),
                          default=0.0), bad is None, f"element {bad[0]}: {bad[1].note}".rstrip(": ") if bad else "",
                          max((d.scale for d in parts), default=1.0))
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        return OutputDiff(name, float("inf"), float("inf"), False, f"shape {x.shape} vs {y.shape}")
    if x.dtype == object or y.dtype == object or x.dtype.kind in "bUS":
        same = bool(np.array_equal(x, y))
        return OutputDiff(name, 0.0 if same else float("inf"), 0.0 if same else float("inf"), same)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    inexact = x.dtype.kind == "f" and (rtol > 0 or atol > 0)  # 0, 0: exact, as asked
    own_eps = float(np.finfo(x.dtype).eps) if inexact and x.dtype.itemsize < 4 else 0.0
    eps = max(own_eps, computed_eps if inexact else 0.0)
    peak = _largest_finite(xf) if eps or scale_atol else 0.0
    out_rtol, floor = rtol, 0.0
    if eps:
        out_rtol, floor = max(rtol, eps), eps * peak
        if own_eps and str(x.dtype) not in precision:
            precision.append(str(x.dtype))
    nan_ok = np.array_equal(np.isnan(xf), np.isnan(yf))
    with np.errstate(invalid="ignore"):
        err = np.where(np.isnan(xf) & np.isnan(yf), 0.0, np.abs(xf - yf))
        inf_same = (xf == yf)
        err = np.where(inf_same, 0.0, err)
    max_abs = _nanmax(err)
    denom = np.maximum(np.abs(xf), 1e-30)
    max_rel = _nanmax(err / denom)
    scale = max(1.0, peak) if scale_atol else 1.0
    ok = nan_ok and bool(np.all(err <= max(atol * scale, floor) + out_rtol * np.abs(np.nan_to_num(xf))))
    return OutputDiff(name, max_abs, max_rel, ok, "" if nan_ok else "NaN positions differ", scale)


def compare(reference: Graph, candidate: Graph, inputs: Mapping[str, Any] | None = None, *, seed: int = 0,
            rtol: float = 1e-4, atol: float = 1e-5, options: OrtOptions | None = None,
            scale_atol: bool = False, names: tuple[str, str] = ("the reference", "the candidate"),
            reference_bytes: bytes | None = None) -> Comparison:
    """Run both graphs under ONNX Runtime on the same (seeded random) inputs and compare outputs.

    Outputs are matched by position, so a pass that renames an output is still compared. A graph ONNX Runtime
    cannot load or run is named in the error (``names``): a model whose op has no kernel for its element type
    (float64 Conv) failed the same way before and after, and the message blamed neither. ``reference_bytes``: run
    that serialized model as the reference (``OrtSession``'s ``model_bytes``).
    """
    feeds = dict(inputs) if inputs is not None else random_inputs(reference, seed=seed)
    try:
        ref = OrtSession(reference, options, model_bytes=reference_bytes)
        ra = ref.run(feeds)
    except ExecutionError as e:
        raise ExecutionError(f"{names[0]}: {e}") from e
    ref_inputs, ref_outputs = ref.input_names, ref.output_names
    del ref  # its memory goes before the candidate's run (all of it without an arena, ``checking_options``)
    try:
        cand = OrtSession(candidate, options)
    except ExecutionError as e:
        raise ExecutionError(f"{names[1]}: {e}") from e
    if len(cand.input_names) != len(ref_inputs):
        raise UserInputError(f"the graphs take different inputs: {', '.join(ref_inputs)} vs "
                             f"{', '.join(cand.input_names)}")
    # inputs, like outputs, are matched by position: a pass may rename them
    try:
        rb = cand.run({nb: feeds[na] for na, nb in zip(ref_inputs, cand.input_names)})
    except ExecutionError as e:
        raise ExecutionError(f"{names[1]}: {e}") from e
    if len(ref_outputs) != len(cand.output_names):
        return Comparison(False, rtol, atol, [OutputDiff("*", float("inf"), float("inf"), False,
                                                         f"{len(ref_outputs)} vs {len(cand.output_names)} outputs")])
    by_pos_b = {na: rb[nb] for na, nb in zip(ref_outputs, cand.output_names)}
    return compare_outputs(ra, by_pos_b, rtol=rtol, atol=atol, names=ref_outputs, scale_atol=scale_atol,
                           computed_in=narrow_float_outputs(reference))


def _nanmax(a: np.ndarray) -> float:
    """The largest value that is not NaN; NaN when every value is (numpy's nanmax then warned on stderr, in the
    middle of a one-line error), 0 for no values."""
    if not a.size:
        return 0.0
    kept = a[~np.isnan(a)]
    return float(kept.max()) if kept.size else float("nan")


class NumericsMismatch(ExecutionError):
    """A pass changed the outputs beyond tolerance (raised by ``NumericsCheck``)."""

    pass_check = True  # the pass manager reports it as "after pass X: ..." rather than a crash


class NumericsCheck:
    """Instrument: after every pass that changed the graph, compare ONNX Runtime outputs with the original's.

    The reference outputs are computed once, from the graph as it entered the
    pipeline, on seeded random inputs; the first pass whose result differs
    beyond ``atol + rtol*|ref|`` is named with the output that diverged.
    ORT's own graph optimizations are disabled so that the graph graphmill
    produced is what gets measured. A pass that resizes the interface on purpose
    (``Pass.resizes_interface``: compound-scale) is not compared; the passes after
    it are compared with its output.
    """

    def __init__(self, *, rtol: float = 1e-4, atol: float = 1e-5, seed: int = 0,
                 dims: Mapping[str, int] | None = None) -> None:
        self.rtol, self.atol, self.seed = rtol, atol, seed
        self.dims = dict(dims or {})
        self.options = checking_options(intra_op_threads=1)
        self.inputs: dict[str, np.ndarray] = {}
        self.reference: dict[str, Any] = {}
        self.names: list[str] = []
        self.computed_in: dict[str, str] = {}  # narrow_float_outputs of the reference graph
        self.checks = 0
        self.worst: dict[str, float] = {}  # pass name -> max |diff| it left

    def enter_pipeline(self, graph: Graph, ctx: Any) -> None:
        # it takes no inputs: "pass inputs explicitly" named something it has no way to do (an outside check)
        leave_out = "check this model without numerics (leave --check-numerics out)"
        self.inputs = random_inputs(graph, seed=self.seed, dims=self.dims, advice=leave_out)
        try:
            sess = OrtSession(graph, self.options)
            self.reference = sess.run(self.inputs)
        except ExecutionError as e:  # the input model's own failure: a refusal of it, which names its file
            raise UserInputError(f"{e} (running the input on the seeded random data --check-numerics compares the "
                                 f"passes on; {leave_out})") from None
        self.names = list(sess.output_names)
        self.computed_in = narrow_float_outputs(graph)

    def after_pass(self, step: Any, graph: Graph, ctx: Any, result: Any) -> None:
        if not getattr(result, "changed", True):
            return
        if getattr(step.pass_obj, "resizes_interface", False):
            # another network on purpose (compound-scale's sizes and weights): nothing to compare it with, and its
            # outputs are the reference of the passes after it (it was named as failing: ORT refused the old inputs)
            self.enter_pipeline(graph, ctx)
            return
        sess = OrtSession(graph, self.options)
        got = sess.run(self.inputs)
        by_pos = {ref: got[new] for ref, new in zip(self.names, sess.output_names)}
        cmp = compare_outputs(self.reference, by_pos, rtol=self.rtol, atol=self.atol, names=self.names,
                              scale_atol=True, computed_in=self.computed_in)
        self.checks += 1
        self.worst[step.name] = max(self.worst.get(step.name, 0.0), cmp.max_abs)
        bad = cmp.first_mismatch
        if bad is not None:
            detail = bad.note or f"max |diff| {bad.max_abs:.3g}, max rel {bad.max_rel:.3g}"
            raise NumericsMismatch(f"changed the numbers: output {bad.name!r} diverged ({detail}; "
                                   f"tolerance atol={self.atol:g} + rtol={self.rtol:g}*|ref|, atol times "
                                   f"{bad.scale:.3g}, the output's largest |ref|{cmp.precision_note}, "
                                   f"seed {self.seed})")


class OrtNodeEvaluator:
    """Evaluates one node with ONNX Runtime, on a one-node model: the ``NodeEvaluator`` that
    fold-constants uses (``graphmill.passes.base.NodeEvaluator``), so a folded value is what ORT
    computes.

    Sessions run single-threaded with ORT's graph optimizations off (one node has nothing to
    optimize, and threads cost more than they save on one small op) and ORT's logger silent.
    """

    def __init__(self) -> None:
        import onnxruntime as ort  # at construction, not during the first fold's timing

        self._ort = ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 4
        self._options = so

    def evaluate(self, node: Node, inputs: Sequence[Any], graph: Graph) -> list[Any]:
        """The node's outputs on ``inputs`` (numpy arrays, None for omitted ones); ``ExecutionError``
        when ORT cannot evaluate the node on its own."""
        import onnx

        root = graph.root
        npb = onnx.NodeProto()
        node_to_proto(node, npb)
        del npb.input[:]
        del npb.output[:]
        in_infos, feeds = [], {}
        for i, (v, a) in enumerate(zip(node.inputs, inputs)):
            if v is None:
                npb.input.append("")
                continue
            name = f"in{i}"
            npb.input.append(name)
            if name not in feeds:
                feeds[name] = a
                elem = onnx.helper.np_dtype_to_tensor_dtype(a.dtype)
                in_infos.append(onnx.helper.make_tensor_value_info(name, elem, a.shape))
        out_infos = []
        for i, v in enumerate(node.outputs):
            if v is None:
                npb.output.append("")
                continue
            npb.output.append(f"out{i}")
            out_infos.append(onnx.helper.make_value_info(f"out{i}", onnx.TypeProto()))
        g = onnx.helper.make_graph([npb], "fold", in_infos, out_infos)
        opsets = [onnx.helper.make_opsetid(d, ver) for d, ver in root.opset_imports.items()]
        ir = root.model.ir_version if root.model is not None else 8
        model = onnx.helper.make_model(g, opset_imports=opsets, ir_version=ir)
        x = feeds.get(npb.input[0]) if npb.input else None
        if node.op_type == "InstanceNormalization" and x is not None and _empty_extent(np.shape(x)):  # known_crash
            raise ExecutionError("ONNX Runtime cannot evaluate it alone (an empty spatial extent crashes it)")
        try:
            sess = self._ort.InferenceSession(model.SerializeToString(), self._options,
                                              providers=["CPUExecutionProvider"])
            outs = sess.run(None, feeds)
        except Exception as e:  # noqa: BLE001 -- ORT raises several types; any failure means "cannot"
            raise ExecutionError(f"ONNX Runtime cannot evaluate it alone ({_one_line(e, 120)})") from None
        return [np.asarray(o) if isinstance(o, np.ndarray) else o for o in outs]
