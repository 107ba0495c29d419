"""The Python API: everything the CLI does, as functions on graphs and files."""

from __future__ import annotations

import math
import numbers
import os
import shlex
from typing import Callable

from graphmill.frontend import load
from graphmill.frontend import save as _save_onnx
from graphmill.frontend.onnx_io import external_data_files
from graphmill.ir import Graph, UserInputError, require_graph
from graphmill.optimization import (OptimizeReport, ReproducerError, check_dims, check_tolerances, model_summary,
                                    resolve_schedule)
from graphmill.optimization import optimize as _run_optimize
from graphmill.util.errors import at_least, at_most
from graphmill.util.limits import check_count, check_flags, check_seed
from graphmill.util.plots import check_png_path
from graphmill.util.suggest import did_you_mean


def optimize(graph: Graph, schedule: "Schedule | str | None" = None, *, devices: int | None = None,
             devices_file: str | None = None, accel=None, memory_gb: float | None = None, cost: str = "roofline",
             **options) -> OptimizeReport:
    """Optimize ``graph`` in place with ``schedule`` and return the report.

    ``schedule`` is a built-in name (``"default"``, ``"ort"``, ``"cleanup"``), inline DSL text
    (``"fold-constants,fixpoint{simplify,cse,dce}"``), a path to a ``.mill`` file (``"my.mill"`` or
    ``"my.mill:NAME"``), a ``Schedule`` or a list of passes; ``None`` runs the default schedule.
    ``options`` are those of the CLI (``check_numerics``, ``rtol``, ``atol``, ``seed``, ``verify_each``,
    ``time_passes``, ``print_ir_after``, ``allow``, ``dims``, ``compare``, ...): see
    ``graphmill.optimization.optimize``.

    Devices (as ``place``: ``devices`` identical chips of ``accel``, or a ``devices_file``; ``memory_gb``;
    ``cost`` roofline or simulator) give the passes that put ops on devices (``place``, ``LEARNED_PASSES``) the
    same device cost model ``place`` uses; a schedule naming one of them without devices is refused before any
    work. With such a pass, ``dims`` are bound in the graph as ``place`` binds them (the model is saved at those
    sizes: its decisions hold for them). The device set and cost travel in the meta those passes write
    (``graph.meta["learned"]`` / ``["placement"]``), so that ``replay_placement`` (``graphmill simulate``)
    re-simulates the decisions.
    """
    require_graph(graph, "optimize")
    from graphmill.optimization import resolve_schedule

    names = [r.name for r in resolve_schedule(schedule, options.get("schedule_file")).runs()]
    need = [n for n in names if n == "place" or n in LEARNED_PASSES]
    if devices is None and devices_file is None and accel is None:
        if need:
            raise UserInputError(f"pass {need[0]!r} puts ops on devices: give them with --devices N or "
                                 "--devices-file D.toml (api.optimize: devices=, devices_file=, accel=)")
        return _run_optimize(graph, schedule, **options)
    from graphmill.backends.simulator.devices import PlacementCostModel, device_set

    if cost not in ("roofline", "simulator"):
        raise UserInputError(f"--cost {cost!r}: choose roofline or simulator")
    ds = device_set(devices=devices, accel=accel, devices_file=devices_file, memory_gb=memory_gb)
    # what a reproducer's rerun command needs to make the same devices (a path; an AccelConfig object has none)
    rerun = [*(["--devices", str(devices)] if devices is not None else []),
             *(["--devices-file", os.path.abspath(devices_file)] if devices_file is not None else []),
             *(["--accel", os.path.abspath(accel)] if isinstance(accel, (str, os.PathLike)) else []),
             *(["--memory", repr(memory_gb)] if memory_gb is not None else []), "--cost", cost]
    if need and options.get("dims"):  # as place: costs need sizes, and the decisions hold for these (saved with them)
        _static_sizes(graph, options["dims"])  # lowers graphmill-domain ops too, once the sizes are bound
        # bound: no symbol is left for the figures and random inputs; but the input file still has them, which a
        # rerun of the whole schedule on it must bind again
        options = {**options, "dims": None, "source_options": [a for k, v in sorted(options["dims"].items())
                                                                for a in ("--dim", f"{k}={v}")]}
    elif need:
        from graphmill.ir.summary import check_nonempty_inputs, name_unnamed_input_dims

        name_unnamed_input_dims(graph)  # as place names them: sizes the learned passes cost
        # as place and simulate refuse it: a learned pass costed ops on no data at 1 cycle, and simulate then
        # refused to replay the model it wrote (an outside check's fuzzing)
        check_nonempty_inputs(graph, "place")
        _lower_for_decisions(graph)
    before = {k: graph.meta.get(k) for k in ("learned", "placement")}
    report = _run_optimize(graph, schedule, cost_model=PlacementCostModel(ds, cost), rerun_options=rerun,
                           **options)
    # by this run's passes, which recorded the device set a replay needs (passes.placement.replay_record)
    written = [k for k, old in before.items() if isinstance(graph.meta.get(k), dict) and graph.meta[k] is not old]
    if len(written) == 2:  # both in this schedule: the later pass's decisions are the nodes' (learned-place,place
        # kept learned's: a review)
        last = next(r["name"] for r in reversed(report.passes) if r["name"] == "place" or r["name"] in LEARNED_PASSES)
        written = ["placement" if last == "place" else "learned"]
    if written:  # the other one, from an earlier run or pass, no longer describes the nodes' devices
        graph.meta.pop("placement" if "learned" in written else "learned", None)
    if "learned" in written:  # the decisions in the report, re-simulated from the meta a saved model carries (the
        # report held the step time alone, so a check outside graphmill had to read the model's meta)
        report.learned = learned_replay(graph, decisions=True)
    return report


def schedule_files(schedule_file: str) -> tuple[str, ...]:
    """The ``.mill`` files a ``-s`` schedule (``FILE.mill``, ``FILE.mill:NAME`` or a built-in name) is read from:
    the file and every file it includes, which no output may overwrite."""
    return resolve_schedule(None, schedule_file).sources


def schedule_policy_files(pipeline: str | None, schedule_file: str | None) -> dict[str, str]:
    """The policy files (and their .json metadata) a schedule's learned passes read (``policy=`` options), as
    flag-like names -> paths: ``optimize -p 'learned-place{policy=p.npz}' -o p.npz`` wrote the model over the
    policy, exit 0."""
    found: dict[str, str] = {}
    for run in resolve_schedule(pipeline, schedule_file).runs():
        policy = run.options.get("policy")
        if isinstance(policy, str) and policy:
            found[f"{run.name}'s policy"] = policy
            if policy.endswith(".npz"):
                found[f"{run.name}'s policy metadata"] = policy[:-4] + ".json"
    return found


def check_reproducer_dir(folder: str, inputs: dict[str, str]) -> None:
    """Refuse, before any work, a ``--reproducer-dir`` that cannot be made or whose files would replace one of
    ``inputs`` (flag -> path)."""
    from graphmill.optimization import check_reproducer_dir as check

    check(folder, inputs)


def save(graph: Graph, path: str | os.PathLike, *, external_data: str | None = None, size_threshold: int = 1024,
         lower: bool = True, force: bool = False) -> int:
    """Save ``graph`` as an ONNX file, atomically (``frontend.save``). graphmill-domain ops that have a
    lowering (``passes/lowering``) are written as their standard-ONNX nodes, so any ONNX consumer runs
    the file; ``lower=False`` keeps them (a file only graphmill reads). ``graph`` itself is unchanged.
    Returns the number of nodes the file's main graph holds (more than ``len(graph)`` where ops were lowered).
    A model or weights file that ``graph``'s own weights are read from is refused unless ``force`` (the
    CLI's ``--force``): it would break the model ``graph`` was loaded from."""
    require_graph(graph, "save")
    check_flags("graphmill.save", lower=lower, force=force)
    if external_data is not None:  # a pathlib path was "bad argument type for built-in operation"
        if not isinstance(external_data, (str, os.PathLike)):
            raise UserInputError(f"graphmill.save: external_data {external_data!r:.40} must be a file name")
        external_data = os.fspath(external_data)
    size_threshold = check_count(size_threshold, "graphmill.save: size_threshold")  # "1" and None: "'<' not
    # supported"; -5 and 1.5 were taken
    if lower:
        from graphmill.frontend.onnx_io import check_structure
        from graphmill.passes.lowering import has_ops_to_lower, lowered_copy, unlowered_node

        if has_ops_to_lower(graph):  # before the copy (a malformed graph's copy can differ from it); without one,
            check_structure(graph, os.fspath(path))  # _save_onnx checks the graph itself

        graph = lowered_copy(graph)
        left = unlowered_node(graph)
        if left is not None:  # it was written, a file onnx's checker refuses (an outside check)
            raise UserInputError(f"{left.describe()} of domain {left.domain} has no lowering to standard ONNX "
                                 "(register_lowering); in Python, save(..., lower=False) writes a file only graphmill "
                                 "reads")
    _save_onnx(graph, path, external_data=external_data, size_threshold=size_threshold, force=force)
    return len(graph)


def inspect(graph: Graph, *, infer: bool = True, dims: dict[str, int] | None = None) -> dict:
    """Summary of a graph: nodes, ops, params, macs, inputs, outputs (see ``GraphSummary``).

    Types are inferred first (registry, then onnx's inference for the rest) on
    the graph itself, which gains type information (an exporter's name for a
    size the graph computes takes that size, or the name of the size it is
    computed from: ``ir.ops.infer``). Symbolic dimensions
    are bound to ``dims`` (default 1) for the cost figures; a name the graph
    does not have is refused. An unnamed input dimension (``[?, 4]``) is named
    ``<input>_dim_<axis>`` for the report (``ir.summary.input_dims_named``); the
    graph keeps it unnamed. ``problems`` lists what inference found wrong
    (inputs that break an op's contract, declared types that contradict
    inferred ones): costs of such nodes are not counted. ``optimize``'s
    before/after figures are this same function (``model_summary``).
    """
    require_graph(graph, "inspect")
    check_flags("graphmill.inspect", infer=infer)
    from graphmill.ir.summary import input_dims_named

    with input_dims_named(graph):  # a free size --dim gives, as simulate, place and partition take it
        return model_summary(graph, infer=infer, dims=dims)


def inspect_file(path: str | os.PathLike, *, dims: dict[str, int] | None = None) -> dict:
    """``inspect`` of the model at ``path``; a refusal of its contents (inference, sizes) names the file."""
    from graphmill.util.errors import naming_file

    graph = load(path)
    with naming_file(os.fspath(path)):
        report = inspect(graph, dims=dims)
    report["file"] = os.fspath(path)
    return report


def demo(out_dir: str, *, model: str = "resnet18", runs: int = 10) -> dict:
    """The job ``make demo`` runs on the embedded example model.

    Build it (seeded random weights), save and reload it (the round trip must be
    proto-equal), then run the default optimization schedule and compare before
    and after: nodes, parameters, MACs, ONNX Runtime latency (one thread; with
    ORT's own optimizations disabled, which measures the graph itself, and
    enabled, as users run it) and the largest output difference.
    """
    from graphmill.backends import onnxruntime as ortb
    from graphmill.frontend import zoo
    from graphmill.frontend.onnx_io import read_model_proto
    from graphmill.optimization import optimize
    from graphmill.frontend.onnx_io import clear_default_presence

    path = os.path.join(out_dir, f"{model}.onnx")
    save(zoo.build(model, batch=1), path)
    original = load(path)
    before = inspect(original)
    rt_path = os.path.join(out_dir, f"{model}.roundtrip.onnx")
    save(load(path), rt_path)
    a, b = read_model_proto(path), read_model_proto(rt_path)
    clear_default_presence(a)
    clear_default_presence(b)

    optimized = load(path)
    report = optimize(optimized, verify_each=True)
    opt_path = os.path.join(out_dir, f"{model}.optimized.onnx")
    save(optimized, opt_path)
    after = inspect(load(opt_path))

    inputs = ortb.random_inputs(original, seed=0)
    latency = {}
    for label, level in (("ort_disabled", "disabled"), ("ort_all", "all")):
        opts = ortb.OrtOptions(intra_op_threads=1, optimization=level)
        t_before, t_after = ortb.time_graphs([original, optimized], inputs, runs=runs, warmup=2, options=opts)
        latency[label] = {"before_ms": t_before.median_ms, "after_ms": t_after.median_ms}
    cmp = ortb.compare(original, optimized, inputs, rtol=1e-4, atol=1e-5,
                       options=ortb.checking_options(), scale_atol=True)
    return {
        "model": model,
        "file": path,
        "optimized_file": opt_path,
        "before": before,
        "after": after,
        "schedule": report.schedule_inline,
        "passes_changed": sorted({r["name"] for r in report.passes if r["changed"]}),
        "latency": latency,
        "input_shape": list(next(iter(inputs.values())).shape),
        "comparison": cmp.to_dict(),
        "roundtrip_proto_equal": a == b,
        "runs": runs,
    }


def simulate(graph: Graph, accel, *, scalesim_compat: bool = False, dims: dict[str, int] | None = None) -> "object":
    """Simulate ``graph`` on an accelerator (an ``AccelConfig``, a dict in the TOML schema, or a TOML path).

    Returns a ``graphmill.backends.simulator.SimReport`` (``.to_dict()`` for JSON, ``.table()``, ``.plot()``);
    nodes the simulator cannot cost are in its ``uncosted`` (totals partial, a ``SimulationWarning``).
    ``scalesim_compat=True`` uses SCALE-Sim 3.0.0's memory arithmetic instead of graphmill's corrected one.
    ``dims`` sizes symbolic dimensions (``{"N": 8}``; an unknown name is refused); the others are simulated at
    1, which the report's ``notes`` say. Types are inferred on ``graph`` itself first, as ``inspect`` does (it
    gains shapes, and an exporter's names for computed sizes take the computed ones), so a data-dependent count
    is a name ``dims`` may give. Unnamed or repeated node names are made unique (``ir.naming.name_nodes``), as
    ``place`` and ``partition`` do, since the report's layers are keyed by name.
    """
    require_graph(graph, "simulate")
    check_flags("graphmill.simulate", scalesim_compat=scalesim_compat)
    from graphmill.backends.simulator import simulate_graph
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir.naming import name_nodes
    from graphmill.ir.summary import check_nonempty_inputs, input_dims_named

    with input_dims_named(graph):  # first: an unnamed input dimension is a size dims may give
        check_nonempty_inputs(graph, "simulate")
        infer_shapes(graph)  # first, as inspect and place do: a data-dependent count is a symbol --dim may name
        _check_sizes(graph, dims, "simulate")  # 0: the simulator's layers refused it as "repeat must be ... positive"
        name_nodes(graph)  # the report's layers are keyed by node name: two unnamed Relus were both "Relu"
        return simulate_graph(graph, accel, scalesim_compat=scalesim_compat, dims=dims)


def simulate_moe(graph: Graph, accel, *, chips: list[int] | None = None, seed: int = 0) -> list[dict]:
    """Per MoE layer of ``graph``: per-expert load measured on seeded inputs (ONNX Runtime), dropped assignments,
    and one step expert-parallel on ``chips`` chips against the layer replicated on one chip
    (``backends/simulator/expert_parallel.py``); [] for a graph without MoE layers."""
    require_graph(graph, "api.simulate_moe")
    from graphmill.backends.simulator.expert_parallel import moe_report

    return moe_report(graph, accel, chips=chips, seed=seed)


def moe_table(rows: list[dict]) -> str:
    """``simulate_moe``'s rows as the lines ``graphmill simulate`` prints."""
    from graphmill.backends.simulator.expert_parallel import moe_report_table

    return moe_report_table(rows)


def simulate_scalesim(topology: str | os.PathLike, config: str | os.PathLike, *, scalesim_compat: bool = False):
    """Simulate a SCALE-Sim topology CSV under a SCALE-Sim .cfg (USER or CALC interface bandwidth);
    ``scalesim_compat=True`` reproduces SCALE-Sim 3.0.0's cycle counts exactly."""
    from graphmill.backends.simulator import read_scalesim_config, read_topology, simulate_layers

    check_flags("graphmill.api.simulate_scalesim", scalesim_compat=scalesim_compat)

    cfg = read_scalesim_config(config)
    return simulate_layers(read_topology(topology), cfg, scalesim_compat=scalesim_compat)


# -- what the CLI's commands need beyond the functions above (graphmill/cli calls this module only) ------------


def load_passes(path: str | os.PathLike) -> list[str]:
    """Run a Python file of the user's own passes and rewrite rules (``--load-passes``, like MLIR's
    ``--load-pass-plugin``) so schedules can name them; returns the pass names it registered.

    Only a path the user gives loads code, never anything named by a model or a schedule; loading the
    same file again is a no-op; an error in the file is one ``UserInputError`` naming file and line.
    """
    from graphmill.passes.plugins import load_pass_file

    return load_pass_file(path)


def list_passes() -> list[dict]:
    """Every registered pass: name, doc, exactness, options (name, type, default, doc, choices), rules."""
    from graphmill.passes import registered_passes
    from graphmill.passes.rewrite_pass import RewritePass

    rows = []
    for name, cls in registered_passes().items():
        rules = [{"name": r.name, "exactness": r.exactness, "doc": r.doc} for r in getattr(cls, "rules", ())] \
            if issubclass(cls, RewritePass) else []
        rows.append({"name": name, "doc": cls.doc(), "exactness": cls.exactness,
                     "options": [{"name": o.name, "type": o.type.__name__, "default": o.default, "doc": o.doc,
                                  **({"choices": list(o.choices)} if o.choices else {}),
                                  **({"range": o.accepted_range()} if o.accepted_range() else {})}
                                 for o in cls.options],
                     "rules": rules})
    return rows


def pass_time_table(rows: list[dict]) -> str:
    """The ``--time-passes`` table of an ``OptimizeReport.time_passes``."""
    from graphmill.passes.instruments import TimePasses

    t = TimePasses()
    for r in rows:
        t.total[r["pass"]] = r["seconds"]
        t.count[r["pass"]] = r["runs"]
    return t.table()


def zoo_models() -> dict[str, str]:
    """Zoo model names with their one-line descriptions, sorted by name."""
    from graphmill.frontend import zoo

    return {name: zoo.DESCRIPTIONS.get(name, "") for name in sorted(zoo.MODELS)}


def zoo_resolve(name: str) -> str:
    """The zoo's name for ``name`` (case, ``-``/``_`` and aliases forgiven), or a UserInputError listing the names."""
    from graphmill.frontend import zoo

    return zoo.resolve_name(name)


def zoo_options(**multipliers) -> dict:
    """``width``/``depth``/``resolution`` checked (> 0) and converted; None values dropped."""
    from graphmill.frontend import zoo

    return {k: zoo.check_positive(k, v) for k, v in multipliers.items() if v is not None}


def zoo_moe_options(*, experts=None, k=None, capacity_factor=None) -> dict:
    """``--experts``/``--k`` (integers >= 1) and ``--capacity-factor`` (a number > 0) parsed; None values dropped.
    Whether they fit together (k <= E) is checked when the model is built."""
    out: dict = {}
    for key, flag, v in (("experts", "--experts", experts), ("k", "--k", k)):
        if v is None:
            continue
        try:
            n = int(str(v), 10)
        except ValueError:
            raise UserInputError(f"{flag} {v!r}: must be an integer >= 1") from None
        if n < 1:
            raise UserInputError(f"{flag} {v!r}: must be an integer >= 1")
        out[key] = n
    if capacity_factor is not None:
        try:
            cf = float(capacity_factor)
        except ValueError:
            raise UserInputError(f"--capacity-factor {capacity_factor!r}: must be a number > 0") from None
        if not cf > 0 or cf == float("inf"):
            raise UserInputError(f"--capacity-factor {capacity_factor!r}: must be a number > 0 (tokens over an "
                                 "expert's capacity are dropped; the capacity is this factor times T k / E)")
        out["capacity_factor"] = cf
    return out


def zoo_build(name: str, **options) -> Graph:
    """Build a zoo model (seeded random weights); ``width``/``depth``/``resolution`` are checked first."""
    from graphmill.frontend import zoo

    name = zoo.resolve_name(name)
    moe = [key for key in ("experts", "k", "capacity_factor") if options.get(key) is not None]
    if moe and name not in zoo.MOE_MODELS:
        raise UserInputError(f"{', '.join(moe)}: options of the mixture-of-experts models "
                             f"({', '.join(zoo.MOE_MODELS)}), not of {name}")
    mult = zoo_options(**{k: options.pop(k) for k in ("width", "depth", "resolution") if k in options})
    return zoo.build(name, **mult, **options)


def scale(graph: Graph, *, phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15,
          divisor: int = 8, seed: int = 0) -> dict:
    """Compound-scale ``graph`` in place (EfficientNet's rule); the report is also in ``graph.meta["scaling"]``."""
    require_graph(graph, "api.scale")
    from graphmill.passes.scaling import scale_graph

    seed = check_seed(seed)  # as every other command's --seed (scale took -1)
    return scale_graph(graph, phi=phi, alpha=alpha, beta=beta, gamma=gamma, divisor=divisor, seed=seed)


def load_accel(path: str | os.PathLike):
    """Read and validate an accelerator TOML (an ``AccelConfig``)."""
    from graphmill.backends.simulator import load_accel as load

    return load(path)


def scale_search(base: Graph | None = None, *, out: str | os.PathLike = "scale-search", checkpoint: str | None = None,
                 cost: str = "macs", accel: str | None = None, max_cost: float | None = None, phi: float = 1.0,
                 step: float = 0.1, max_value: float = 2.0, tolerance: float = 0.1, steps: int = 30,
                 limit: int | None = None, seed: int = 0, stub: bool = False) -> dict:
    """Grid search of EfficientNet's compound-scaling coefficients; resumable from ``checkpoint``.

    Writes OUT/results.json, OUT/accuracy_vs_cost.png and the checkpoint (default OUT/checkpoint.json);
    returns ``{"result": SearchResult, "results": path, "plot": path, "checkpoint": path, "cost": name,
    "written": [paths that exist]}``. ``base`` defaults to a small ResNet-18 for 16x16 digits.
    Every input is checked before the first candidate (a bad one would otherwise fail each candidate
    in turn, minutes later): the numbers, the accelerator file, and the base model's ops against the
    torch backend that trains the candidates.
    """
    from graphmill.search import scaling as S
    from graphmill.util.files import check_out_folder, write_json

    out = check_out_folder(out, "scale-search", "results.json, accuracy_vs_cost.png and checkpoint.json")
    check_scale_search_args(cost=cost, accel=accel, max_cost=max_cost, phi=phi, steps=steps, limit=limit, seed=seed,
                            step=step, max_value=max_value, tolerance=tolerance)
    space = S.ScalingGrid(step=step, max_value=max_value, tolerance=tolerance)
    candidates = space.candidates()
    if not candidates:  # `--step 5` evaluated nothing and exited 0
        raise UserInputError(f"--step {step:g} --max-value {max_value:g} --tolerance {tolerance:g}: the grid from 1 to "
                             f"{max_value:g} has no alpha, beta, gamma with |alpha*beta^2*gamma^2 - 2| <= {tolerance:g}")
    cost_model = S.SimLatencyCost(load_accel(accel)) if cost == "sim" else S.MacsCost()
    check_flags("graphmill.api.scale_search", stub=stub)
    evaluator = S.StubEvaluator() if stub else S.TrainEvaluator(steps=steps, seed=seed)
    base = base if base is not None else S.default_base(seed)
    if not stub:
        from graphmill.backends.torch.training import check_digits_classifier, image_input

        check_trainable(base, "the candidates")
        image_input(base)  # what TrainEvaluator trains: one image input, 10 digit classes
        check_digits_classifier(base)
    _check_grid_scales(base, candidates, phi)
    if checkpoint is not None:  # a file that is no checkpoint is refused before OUT is made
        from graphmill.search import checkpoint as search_checkpoint

        search_checkpoint.load(checkpoint)
    os.makedirs(out, exist_ok=True)
    checkpoint = checkpoint or os.path.join(out, "checkpoint.json")
    result = S.run_search(base, space=space, evaluator=evaluator, cost=cost_model,
                          objective=S.Objective(max_cost=max_cost), checkpoint=checkpoint, phi=phi,
                          seed=seed, limit=limit)
    results_path = os.path.join(out, "results.json")
    plot_path = os.path.join(out, "accuracy_vs_cost.png")
    write_json(results_path, result.to_dict())
    if result.candidates:
        S.plot(result, plot_path)
    written = [p for p in (results_path, plot_path, checkpoint) if os.path.exists(p)]
    return {"result": result, "results": results_path, "plot": plot_path if result.candidates else None,
            "checkpoint": checkpoint, "cost": cost_model.name, "written": written}


def _check_grid_scales(base: Graph, candidates: list, phi: float) -> None:
    """Before the first candidate: the grid's largest coefficient to the power ``phi`` within compound-scale's
    multiplier limit, and ``base`` scaled by the candidate that changes the most (every dimension it can) once.
    Why: ``--phi 100`` and a model whose size is fixed for its input failed every candidate in turn, minutes
    later, and exited 1 with results written."""
    from graphmill.passes.scaling.compound import MAX_MULTIPLIER
    from graphmill.passes.scaling import scale as scale_pass

    top = max(max(c) for c in candidates)
    try:
        grown = top ** phi
    except OverflowError:
        grown = math.inf
    if not grown <= MAX_MULTIPLIER:
        raise UserInputError(f"--phi {phi:g}: the grid's largest coefficient {top:g} gives {top:g}**{phi:g} = "
                             f"{grown:.4g}, over compound-scale's limit of {MAX_MULTIPLIER:g} per multiplier (a "
                             "smaller --phi or --max-value)")
    a, b, g = max(candidates, key=lambda c: (sum(x != 1 for x in c), c))
    try:
        scale_pass(base, phi, a, b, g)  # a copy: the base is untouched
    except UserInputError as e:
        raise UserInputError(f"the base model cannot be scaled by the grid's candidates (tried alpha, beta, gamma "
                             f"{a:g}, {b:g}, {g:g} at phi {phi:g}): {e}") from None


def check_scale_search_args(*, cost: str, accel: str | None, max_cost: float | None, phi: float, steps: int,
                            limit: int | None, seed: int, step: float = 0.1, max_value: float = 2.0,
                            tolerance: float = 0.1) -> None:
    """The numbers and files of a scale search, checked up front: one UserInputError naming the option."""
    import math

    if cost not in ("macs", "sim"):
        raise UserInputError(f"--cost {cost!r}: choose macs or sim")
    if cost == "sim" and not accel:
        raise UserInputError("--cost sim needs --accel A.toml (the accelerator to simulate on)")
    if cost != "sim" and accel:
        raise UserInputError("--accel is used only with --cost sim (the cost is MACs otherwise)")
    for name, value, low in (("--steps", steps, 1), ("--limit", limit, 1), ("--seed", seed, 0)):
        if value is not None:  # a check: the caller passes its own values on
            check_count(value, name, low)
    for name, value in (("--phi", phi), ("--max-cost", max_cost), ("--step", step), ("--max-value", max_value)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UserInputError(f"{name} {value!r}: must be a number > 0")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise UserInputError(f"--tolerance {tolerance!r}: must be a number >= 0")
    if max_value is not None and max_value < 1:  # the grid starts at 1 (ScalingGrid's own check says max_value=)
        raise UserInputError(f"--max-value {max_value!r}: must be >= 1 (the grid runs from 1 to it)")


def check_trainable(graph: Graph, what: str = "the model") -> None:
    """UserInputError listing the ops of ``graph`` the torch backend cannot train (its op table:
    ``graphmill.backends.torch.supported_ops``), before any work: ``what`` it trains ("the candidates" of a
    search; `train` said so of the one model it trains: an outside check)."""
    require_graph(graph, "api.check_trainable")
    from graphmill.backends.torch import supported_ops

    known = set(supported_ops())  # graphmill-domain ops it runs itself are keyed "graphmill::Op"
    missing = sorted({n.qualified_op for n in graph.all_nodes() if n.qualified_op not in known})
    if missing:
        raise UserInputError(f"graph {graph.name!r}: the torch backend, which trains {what}, lacks "
                             f"op(s) {', '.join(missing)}")


def check_search_proxy(proxy: dict, flags: dict[str, str] | None = None) -> None:
    """Refuse, in one line naming the setting (as ``flags`` spells it, e.g. ``--proxy-resolution``), a proxy or
    latency setting of the built-in MnasNet evaluator that would make every trial fail."""
    from graphmill.search.evaluators.mnasnet import settings_problem

    bad = settings_problem(proxy)
    if bad:
        name, why = bad
        raise UserInputError(f"{(flags or {}).get(name, name)} {proxy[name]!r}: {why}")


def search(space: str, evaluator: str = "builtin", *, out: str | os.PathLike, strategy: str = "default",
           options: list[str] | dict | None = None, budget: int = 50, workers: int = 1,
           executor: str | None = None, ray_address: str | None = None, objective: str | None = None,
           accel: str | None = None, timeout: float | None = None, seed: int = 0, proxy: dict | None = None,
           progress=None) -> dict:
    """``graphmill search``: run (or resume, from OUT/checkpoint.json) a search into the folder ``out``.

    ``space`` is ``"mnasnet"``, ``"accelerator"``, ``"mnasnet+accelerator"`` or a space JSON file;
    ``evaluator`` is ``"builtin"`` or ``"MODULE:FUNCTION"``. Everything is checked before anything is
    written. OUT gets checkpoint.json, history.jsonl, best_so_far.png, pareto.png and best.onnx (MnasNet's
    space); ``progress(line)`` gets one line per finished trial. Returns ``{"result": SearchResult, "summary":
    dict}`` (see ``graphmill.search.workflow``); for the plain Python API on your own space and evaluator, use
    ``graphmill.search.run``.
    """
    from graphmill.search.workflow import OUT_FILES, run_search
    from graphmill.util.files import check_inputs_outside

    check_inputs_outside(out, {"--space": space, "--accel": accel}, OUT_FILES)
    return run_search(space, evaluator, out=os.fspath(out), strategy=strategy, options=options, budget=budget,
                      workers=workers, executor=executor, ray_address=ray_address, objective=objective, accel=accel,
                      timeout=timeout, seed=seed, proxy=proxy, progress=progress)


def search_method(method: str, *, out: str | os.PathLike, budget: int | None = None, seed: int = 0,
                  workers: int = 1, executor: str | None = None, ray_address: str | None = None,
                  accel: str | None = None, options: list[str] | dict | None = None, progress=None) -> dict:
    """``graphmill search --method autohas|nahas|evanet``: run (or resume) a whole search method into ``out``.

    ``options`` are the method's own settings, as ``["key=value", ...]`` (the CLI's ``--option``) or a dict of
    strings or typed values (``{"rows": [8, 16]}``); each method documents its keys and refuses unknown ones.
    Returns the method's JSON-able summary (``graphmill.search.methods``: at least method, task, out, files,
    interrupted, checkpoint, best, trials).
    """
    from graphmill.search.methods import check_method, run_method

    from graphmill.search.workflow import OUT_FILES
    from graphmill.util.files import check_inputs_outside

    check_method(method)
    check_inputs_outside(out, {"--accel": accel}, OUT_FILES)
    if isinstance(options, dict):
        opts = {str(k): v for k, v in options.items()}  # typed values (a list of ints) reach the method's parser
    else:
        opts = {}
        for item in options or []:
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise UserInputError(f"--option {item!r}: expected KEY=VALUE")
            opts[key.strip()] = value.strip()
    return run_method(method, out=os.fspath(out), budget=budget, seed=seed, workers=workers, executor=executor,
                      ray_address=ray_address, accel=accel, options=opts, progress=progress)


MAX_TRAIN_SIZE = 1024
"""Largest image size ``train`` builds or trains at (``--max-size 100000`` failed as a Conv node over the tensor
size limit, naming no flag)."""

EMBED_DIM = 64
"""The embedding size (outputs) of a zoo model ``train --contrastive`` builds."""

MAX_MICROBATCHES = 4096
"""Most micro-batches ``partition`` simulates (the GPipe schedule is simulated one micro-batch at a time)."""


def partition(graph: Graph, *, stages: int, microbatches: int = 1, schedule: str = "gpipe", method: str = "optimal",
              objective: str = "time", accel=None, devices_file: str | None = None, memory_cap: float = 0.0,
              batch: int = 0, remat: bool = True, optimizer: str = "adam", cost: str = "roofline",
              plot: str | os.PathLike | None = None, run: bool = False, steps: int = 2, lr: float = 0.01,
              seed: int = 0, progress: Callable[[str], None] | None = None,
              dims: dict[str, int] | None = None) -> dict:
    """Pipeline-partition ``graph`` in place (GPipe): ``node.meta["stage"]``, simulated schedule, optional real run.

    Runs the ``pipeline-partition`` pass with the simulator's cost model (``cost``: ``"roofline"`` or
    ``"simulator"``) for the chips of ``accel`` (a config, dict or TOML path; default the built-in one) or of a
    ``devices_file`` (the device-placement format; identical devices only, ``pipeline_devices``); simulates
    ``schedule`` (``"gpipe"`` or ``"1f1b"``) and, with ``plot``, writes its Gantt PNG. ``run=True`` trains ``steps`` steps on K local processes (torch.distributed.pipelining, gloo) and
    compares with one process (``report["run"]``); the trained weights are written back into ``graph``;
    ``progress(line)`` gets one line per step of each. The K processes are started with ``spawn``, which imports
    the calling script again: call ``partition(..., run=True)`` under ``if __name__ == "__main__":``.
    Returns the report: ``stages`` [{index, nodes, forward, backward, send_bytes, memory, ...}], ``bottleneck``,
    ``bubble_fraction``, ``step_time``, ``speedup_vs_one_device``, ``units``, ``node_times``, ... (README).
    A model symbolic in its batch is costed at ``batch`` (default: ``microbatches``, one sample each); ``dims``
    binds its other symbols (a sequence length, an image size), as ``place``'s does.
    """
    require_graph(graph, "partition")
    from graphmill.backends.simulator import RooflineCostModel, SimulatorCostModel
    from graphmill.backends.simulator.pipeline import SCHEDULES, pipeline_devices, simulate_pipeline
    from graphmill.passes import PassContext, run_passes
    from graphmill.passes.pipeline import PipelinePartition, batch_dimension, check_objective

    stages, microbatches, batch, steps = (check_count(value, f"--{name}", low) for name, value, low in (
        ("stages", stages, 1), ("microbatches", microbatches, 1), ("batch", batch, 0), ("steps", steps, 1)))
    check_flags("graphmill.partition", remat=remat, run=run)
    seed = check_seed(seed, "seed")  # -1 ran (the other commands refuse it; the CLI has no --seed: an outside check)
    if isinstance(memory_cap, bool) or not isinstance(memory_cap, (int, float)) or not (
            0 <= memory_cap < math.inf):
        raise UserInputError(f"--memory-cap {memory_cap!r}: bytes, a finite number >= 0 (0: the devices' own memory)")
    check_png_path(plot)
    if run and not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):  # torch's traceback, or NaN weights
        raise UserInputError(f"--lr {lr!r}: must be a finite number > 0")
    if microbatches > MAX_MICROBATCHES:  # the schedule is simulated per micro-batch: 10^9 of them took 24 GB
        raise UserInputError(f"--microbatches {microbatches}: at most {MAX_MICROBATCHES:,} (GPipe's own runs use "
                             "a few dozen; there the bubble (K-1)/(M+K-1) is under 1% of a step for up to 40 stages)")
    if schedule not in SCHEDULES:
        raise UserInputError(f"--schedule {schedule!r}{did_you_mean(str(schedule), SCHEDULES)}: choose from "
                             f"{', '.join(SCHEDULES)}")
    if cost not in ("roofline", "simulator"):
        raise UserInputError(f"--cost {cost!r}: choose roofline or simulator")
    check_objective(objective, method)
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir.partition import compute_nodes
    from graphmill.ir.summary import check_nonempty_inputs, name_unnamed_input_dims

    name_unnamed_input_dims(graph)  # an unnamed batch ([?, 4]) is the batch --batch sizes
    check_nonempty_inputs(graph, "partition")
    infer_shapes(graph)  # a torch.onnx.export file declares no intermediate shapes; --run cuts at typed values
    if dims:  # the batch is --batch's (a --dim of it fixed the batch, and --batch 8 then blamed the model: a review)
        try:
            batch_symbol = batch_dimension(graph, symbolic=1).symbol
        except UserInputError:  # no one batch dimension (inputs of other leading symbols): --dim binds them
            batch_symbol = None
        if batch_symbol in dims:
            raise UserInputError(f"--dim {batch_symbol}: the batch dimension; --batch B sizes it (api: batch=)")
    _bind_sizes(graph, dims, "partition")
    ops = len(compute_nodes(graph))
    if stages > ops:
        raise UserInputError(f"--stages {stages}: graph {graph.name!r} has only {ops} compute op(s) to spread over "
                             "the stages")
    devices = pipeline_devices(accel, devices_file)
    if devices.count < stages:
        where = (f"{devices_file} lists {devices.count}: add [[device]] entries" if devices_file is not None else
                 f"the accelerator has {devices.count}: set system.chips in its TOML, or give --devices-file")
        raise UserInputError(f"--stages {stages}: {stages} stages need {stages} devices; {where}")
    cap = memory_cap or devices.memory_cap(stages)  # stage s runs on device s: the smallest of those K
    if not batch:  # a symbolic batch defaults to M (one sample per micro-batch); a fixed one is the model's own
        batch = batch_dimension(graph, 0, symbolic=microbatches).size
    model = (SimulatorCostModel if cost == "simulator" else RooflineCostModel)(devices.accel)
    p = PipelinePartition(stages=stages, microbatches=microbatches, objective=objective, method=method,
                          memory_cap=float(cap), remat=remat, optimizer=optimizer, batch=batch, schedule=schedule)
    run_passes(graph, [p], ctx=PassContext(cost_model=model))
    plan = graph.meta["pipeline"]
    sim = simulate_pipeline(plan, model, schedule=schedule)
    report = dict(plan)
    report.update({"bubble_fraction": sim.bubble_fraction, "step_time": sim.step_time,
                   "speedup_vs_one_device": sim.speedup, "schedule": schedule, "cost_model": cost,
                   "accel": devices.accel.name, "clock_mhz": devices.accel.clock_mhz,
                   "link": {"latency": devices.accel.link_latency_cycles,
                            "bytes_per_unit": devices.accel.link_bw_bytes_per_cycle},
                   "peak_memory": sim.peak_memory, "in_flight": sim.in_flight})
    if run:
        from graphmill.backends.torch.pipeline import run_pipeline

        report["run"] = run_pipeline(graph, steps=steps, batch=plan["batch"], microbatches=microbatches,
                                     schedule=schedule, lr=lr, seed=seed, progress=progress)
    if plot:
        sim.gantt(os.fspath(plot))
    return report


def _check_sizes(graph: Graph, dims: dict[str, int] | None, verb: str) -> None:
    """``dims`` name symbols of ``graph`` (``check_dims``) and are sizes >= 1: a command that costs ops has nothing
    to cost on an empty tensor."""
    check_dims(graph, dims)
    if dims and any(v < 1 for v in dims.values()):
        given = ", ".join(f"--dim {k}={v}" for k, v in dims.items())
        raise UserInputError(f"{given}: a size to {verb} at must be >= 1")


def _bind_sizes(graph: Graph, dims: dict[str, int] | None, verb: str) -> None:
    """Bind ``dims`` (checked: ``_check_sizes``) in ``graph``, whose shapes are inferred, and infer them again."""
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir.summary import bind_symbols

    if not dims:
        return
    _check_sizes(graph, dims, verb)
    given = ", ".join(f"--dim {k}={v}" for k, v in dims.items())
    bind_symbols(graph, dims, in_place=True)
    try:  # what inference refuses now comes from the sizes given (it accepted the graph before)
        infer_shapes(graph)
    except UserInputError as e:
        raise UserInputError(f"{given}: {e}") from None


def _lower_for_decisions(graph: Graph) -> None:
    """Lower graphmill-domain ops (a ``graphmill::MoE``) in ``graph`` before ops are placed: every saved model holds
    them lowered, and decisions made on the op itself described another graph than the one written (simulate
    refused a training step's, replayed a forward one at another step time: an outside check)."""
    from graphmill.passes.lowering.lower import has_ops_to_lower, lower_graph

    if has_ops_to_lower(graph):
        lower_graph(graph)  # infers the new values' types itself


def _static_sizes(graph: Graph, dims: dict[str, int] | None) -> None:
    """Bind ``dims`` in ``graph`` and infer every intermediate shape (a torch.onnx.export file has none), or refuse
    in one line: placement costs ops, and costs need sizes. graphmill-domain ops are lowered once the sizes are
    bound (``_lower_for_decisions``): a MoE lowered at a symbolic batch sizes its capacity at run time, and no
    shape after it was static (a review: place of a MoE model with --dim N=8 was refused)."""
    from graphmill.frontend.onnx_shape_inference import infer_shapes
    from graphmill.ir.summary import (check_nonempty_inputs, data_dependent_note, name_unnamed_input_dims, symbols,
                                      symbols_to_give)

    name_unnamed_input_dims(graph)  # first: a size --dim gives
    check_nonempty_inputs(graph, "place")
    infer_shapes(graph)  # first: a size the graph computes is no symbol to bind (ir.ops.infer)
    _bind_sizes(graph, dims, "place")
    _lower_for_decisions(graph)
    free = symbols_to_give(graph, symbols(graph))
    if free:
        raise UserInputError(f"graph {graph.name!r} has symbolic dimension(s) {', '.join(free)}: op costs need sizes; "
                             f"give them with --dim (api: dims=), e.g. --dim {free[0]}=32"
                             + data_dependent_note(graph, free))


def place(graph: Graph, *, method: str = "heft", devices: int | None = None, devices_file: str | None = None,
          accel=None, memory_gb: float | None = None, cost: str = "roofline", budget: int | None = None,
          seed: int = 0, options: dict | None = None, training: bool = False, progress=None,
          checkpoint: str | None = None,
          plot: str | os.PathLike | None = None, info: dict | None = None,
          dims: dict[str, int] | None = None) -> dict:
    """Place every op of ``graph`` on a device (``node.meta["device"]``) and return the JSON report (README,
    "Device placement"; the issue's schema exactly).

    Devices: ``devices`` identical chips of ``accel`` (default: the built-in accelerator; without ``devices``,
    ``accel``'s ``system.chips``) or a heterogeneous ``devices_file``; ``memory_gb`` overrides every device's
    memory. ``cost``: ``"roofline"``, ``"simulator"`` or ``"ort"`` (op times measured by ONNX Runtime's per-op
    profiler, ``backends/ort_costmodel.py``). ``training=True`` places the training step
    (``passes.placement.training_graph``: one backward op per forward op): the report covers both, ``graph``'s
    nodes get their forward ops' devices. ``budget``, ``seed``, ``options``, ``progress`` (a callable taking a
    line), ``checkpoint``: the learned placers' (``budget`` None: rl's and hierarchical's default, 800 samples;
    learned's, no fine-tuning). ``plot`` writes the schedule as a Gantt PNG; ``info`` (a dict)
    receives wall times per method and the learned placer's statistics. ``dims`` binds symbolic dimensions
    (e.g. ``{"N": 32}``, the batch of a zoo model) in ``graph`` itself: op costs need sizes, and a placement holds
    for one step size, so the placed model keeps them. The placement, method and device set travel in the graph's meta
    (``graph.meta["placement"]``), so that ``graphmill simulate`` can replay a saved placed model.
    """
    require_graph(graph, "place")
    from graphmill.backends.simulator.devices import PlacementCostModel, device_set
    from graphmill.backends.simulator.placement_sim import measured_cost, placement_gantt
    from graphmill.passes.placement import LEARNED as LEARNED_PLACERS
    from graphmill.passes.placement import check_method, place_graph, training_graph
    from graphmill.ir.naming import name_nodes

    if method != "learned":  # learned: the learned passes' policy (issue 14), placed by _learned_place below
        check_method(method)
    if cost not in ("roofline", "simulator", "ort"):
        raise UserInputError(f"--cost {cost!r}: choose roofline, simulator or ort")
    if info is not None and not isinstance(info, dict):  # filled at the end: after the whole placement, in place
        raise UserInputError(f"graphmill.place: info must be a dict to fill, got {type(info).__name__}")
    if budget is not None:
        budget = check_count(budget, "--budget")
        if budget == 0 and method in LEARNED_PLACERS:  # it sampled their default 800 without a word (an outside check)
            raise UserInputError(f"--budget 0: {method} samples at least one placement; leave --budget out for its "
                                 "default (800)")
    budget = budget or 0  # 0 below: the method's default (the place pass's option reads the same)
    check_flags("graphmill.place", training=training)
    seed = check_seed(seed)
    check_place_checkpoint(method, budget, checkpoint)
    if options is not None and not isinstance(options, dict):
        raise UserInputError(f"options: expected a dict of option names and values, got {type(options).__name__}")
    if options and method not in (*LEARNED_PLACERS, "learned"):  # they were ignored without a word
        raise UserInputError(f"options {sorted(map(str, options))}: only method rl, hierarchical or learned takes "
                             f"options; {method} is a heuristic that takes none")
    check_png_path(plot)
    ds = device_set(devices=devices, accel=accel, devices_file=devices_file, memory_gb=memory_gb)
    _static_sizes(graph, dims)
    name_nodes(graph)
    target = training_graph(graph) if training else graph
    measured = measured_cost(graph, ds) if cost == "ort" else None
    model = PlacementCostModel(ds, measured or cost)
    if method == "learned":
        result = _learned_place(target, model, budget=budget, seed=seed, options=options, progress=progress,
                                checkpoint=checkpoint)
    else:
        result = place_graph(target, model, method=method, budget=budget, seed=seed, options=options,
                             progress=progress, checkpoint=checkpoint)
    target.meta["placement"].update({"device_set": ds.to_dict(), "cost": cost})
    if measured is not None:  # a replay re-measuring would time another run of another machine: keep these
        target.meta["placement"]["measured_us"] = dict(measured.times_us)
    if training:  # the forward ops' placement travels on the given graph too
        by_name = {n.name: n.meta.get("device") for n in target.nodes}
        for n in graph.nodes:
            if n.name in by_name:
                n.meta["device"] = by_name[n.name]
        # the backward ops are not in the model that is saved: every op's device travels in the meta for
        # replay_placement to rebuild the step (passes.placement.training_step, as the learned passes do)
        graph.meta["placement"] = dict(target.meta["placement"], training=True, decisions={
            n.name: [n.meta["device"]] for n in target.nodes if "device" in n.meta})
    if plot:
        placement_gantt(result, os.fspath(plot))
    if info is not None:
        info.update(result.info)
    return result.report


def check_placement(graph: Graph, inputs: dict | None = None, *, runs: int = 3, seed: int = 0) -> dict:
    """Run a placed graph on one process per device (torch.distributed, gloo) and compare with one ONNX Runtime
    session: ``{"devices", "runs", "outputs_equal", "max_abs_diff", "step_time_s", "reference_step_time_s", ...}``."""
    require_graph(graph, "api.check_placement")
    from graphmill.backends.placed_execution import run_placed

    out = run_placed(graph, inputs, runs=runs, seed=seed)
    out.pop("outputs", None)
    return out


def replay_placement(graph: Graph) -> dict | None:
    """Simulate the placement a saved placed model carries (``graph.meta["placement"]``, ``node.meta["device"]``)
    on the device set it was made for: ``{"makespan", "units", "devices", "peak", "method"}``; None when the
    graph is not placed. A graph the learned passes placed (``graph.meta["learned"]``, no ``placement``) replays
    with its fusion groups and priorities (``learned_replay``; ``method`` is the pass)."""
    require_graph(graph, "api.replay_placement")
    from graphmill.backends.simulator.devices import cost_from_meta
    from graphmill.backends.simulator.placement_sim import placed_device_set, replay_placement as _replay

    ds = placed_device_set(graph)
    if ds is None:
        learned = learned_replay(graph)
        return None if learned is None else dict(learned, method=graph.meta["learned"].get("pass"))
    cost = cost_from_meta(graph.meta["placement"], f"graph {graph.name!r}: its placement",
                          ("roofline", "simulator", "ort"))
    return _replay(graph, ds, cost=cost)


# -- training (graphmill train) --------------------------------------------------------------------------------


def train(model: "str | os.PathLike | Graph", *, out: "str | os.PathLike" = "train-out", progressive: bool = False,
          contrastive: bool = False, stages: int | None = None, min_size: int | None = None,
          max_size: int | None = None, dropout=None, magnitude=None, mixup=None, batch: int = 64,
          micro_batch: int | None = None, temperature: float | None = None, embed_dim: int | None = None,
          steps: int | None = None,
          epochs: int | None = None, lr: float = 3e-3, seed: int = 0, width: float | None = None,
          depth: float | None = None, resume: bool = False, threads: int | None = None, progress=None) -> dict:
    """``graphmill train``: train ``model`` (a zoo name, an ``.onnx`` path or a ``Graph``) on the shipped task
    (scikit-learn's digits) through the torch backend, and write OUT/model.onnx (the trained weights),
    OUT/history.json and OUT/report.json; OUT/checkpoint.pt is written at every progress line and read
    back by ``resume=True``.

    Modes: plain fixed-size training (the default, the baseline), ``progressive`` (EfficientNetV2: ``stages``
    stages from ``min_size`` to the model's size, ``dropout``/``magnitude``/``mixup`` rising from their first
    to their second value) or ``contrastive`` (BASIC: two views, batch ``batch`` in micro-batches of
    ``micro_batch``, which must divide it). None: the default (``stages`` 4, ``min_size`` 16, ``dropout`` (0.1,
    0.3), ``magnitude`` (5, 15), ``mixup`` (0, 0.2), ``temperature`` 0.1, ``embed_dim`` 64); an option the mode
    does not use is refused when given (``stages``/``min_size`` outside progressive, ``dropout``/``mixup`` with
    contrastive, ``temperature``/``embed_dim``/``micro_batch`` outside it) and is null in the report's
    ``config``. ``steps`` or ``epochs`` (default 10 epochs) is the length. Zoo
    models are built at ``max_size`` (default 32) with 10 classes (``embed_dim`` outputs when contrastive),
    scaled by ``width``/``depth``. Every option is checked before any work. ``progress(line)`` gets one line
    per epoch and stage. Returns the report (``interrupted`` True after Ctrl-C: nothing but the checkpoint
    was written; the same call with ``resume=True`` continues).
    """
    if not isinstance(model, (str, os.PathLike, Graph)):  # None: a TypeError from os.stat
        raise UserInputError(f"graphmill.api.train: model {model!r:.40} must be a zoo name, an .onnx path or a Graph")
    from graphmill.backends.torch.training import TrainConfig, check_config
    from graphmill.backends.torch.training.loop import MAX_THREADS, torch_threads
    from graphmill.util.files import check_out_folder

    if progressive and contrastive:
        raise UserInputError("--progressive and --contrastive are separate modes; choose one")
    # a script's numpy integers are integers (np.int64(8) was refused as "must be an integer >= 1": an outside
    # check); anything else goes on to TrainConfig's checks as given, for their messages (max_size, embed_dim and
    # threads: check_count below)
    stages, min_size, batch, micro_batch, steps, epochs, seed = (
        int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v
        for v in (stages, min_size, batch, micro_batch, steps, epochs, seed))
    mode = "progressive" if progressive else "contrastive" if contrastive else "fixed"
    # given but unused, they were recorded in the report's config as if applied (an outside check: --contrastive
    # --dropout 0.5 trained as --dropout 0 did, and the report said 0.5); the defaults are TrainConfig's
    given = {"stages": stages, "min_size": min_size, "dropout": dropout, "magnitude": magnitude, "mixup": mixup,
             "temperature": temperature, "embed_dim": embed_dim}
    used = {"stages": progressive, "min_size": progressive, "dropout": not contrastive, "magnitude": True,
            "mixup": not contrastive, "temperature": contrastive, "embed_dim": contrastive}
    for k, v in given.items():
        if v is not None and not used[k]:
            flag = "--" + k.replace("_", "-")
            raise UserInputError(f"{flag} applies to --progressive training only" if k in ("stages", "min_size")
                                 else f"{flag} applies to --contrastive training only" if k in ("temperature",
                                                                                              "embed_dim")
                                 else f"{flag} applies to fixed-size and --progressive training; --contrastive "
                                      "training keeps the model's own Dropout rates and mixes no images")
    embed_given = embed_dim is not None
    defaults = {k: getattr(TrainConfig, k, None) for k in given} | {"embed_dim": EMBED_DIM}
    stages, min_size, dropout, magnitude, mixup, temperature, embed_dim = (
        (v if v is not None else defaults[k]) if used[k] else None for k, v in given.items())
    cfg = TrainConfig(mode=mode, steps=steps, epochs=epochs, batch=batch, micro_batch=micro_batch, stages=stages,
                      min_size=min_size, dropout=dropout, magnitude=magnitude, mixup=mixup,
                      temperature=temperature, lr=lr, seed=seed)
    check_config(cfg)
    max_size, embed_dim, threads = (None if v is None else check_count(v, name, low) for name, v, low in (
        ("--max-size", max_size, 1), ("--embed-dim", embed_dim, 1), ("--threads", threads, 1)))
    check_flags("graphmill.api.train", progressive=progressive, contrastive=contrastive, resume=resume)
    if threads is not None and threads > MAX_THREADS:  # torch refused 2^31 with an overflow traceback
        raise UserInputError(f"--threads {threads}: at most {MAX_THREADS}")
    for name, v in (("--max-size", max_size), ("--min-size", min_size)):
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_TRAIN_SIZE:  # the zoo then fails on a node
            raise UserInputError(f"{name} {v}: at most {MAX_TRAIN_SIZE} px (the task's 8x8 digits are upsampled to it)")
    if progressive and max_size is not None and min_size > max_size:
        raise UserInputError(f"progressive schedule: sizes shrink (--min-size {min_size} > --max-size {max_size}); "
                             "progressive learning grows the image size")
    out = check_out_folder(out, "train", "model.onnx, history.json, report.json and checkpoint.pt")
    checkpoint = os.path.join(out, "checkpoint.pt")
    if os.path.exists(checkpoint) and not resume:
        raise UserInputError(f"{checkpoint}: a checkpoint exists; pass --resume to continue it, or another --out")
    if resume and not os.path.exists(checkpoint):
        raise UserInputError(f"{checkpoint}: no checkpoint to resume from; run without --resume to start")
    built = not isinstance(model, Graph) and not (str(model).endswith(".onnx") or os.path.exists(model))
    if not built and (width is not None or depth is not None or embed_given):  # ignored there (--embed-dim: a review)
        raise UserInputError(f"{'--embed-dim sizes' if embed_given else '--width/--depth scale'} zoo models; "
                             f"{'a graph' if isinstance(model, Graph) else 'an .onnx file'} is trained as it is")
    if isinstance(model, Graph):  # a copy: the caller's graph keeps its weights (it held the trained ones after)
        graph, cfg.model = model.copy(), f"graph {model.name}"
    elif not built:
        graph, cfg.model = load(model), os.path.abspath(os.fspath(model))
    else:
        name = zoo_resolve(str(model))
        if max_size is not None and max_size < 16:  # the zoo reads a resolution below 16 as a multiplier
            raise UserInputError(f"--max-size {max_size}: zoo models are built at 16 px or more")
        opts = {"width": width, "depth": depth, "resolution": max_size or 32,
                "num_classes": embed_dim if contrastive else 10, "seed": seed}
        from graphmill.frontend.zoo import UnknownZooOption

        try:
            graph = zoo_build(name, **{k: v for k, v in opts.items() if v is not None})
        except UnknownZooOption as e:  # a sequence model's builder takes no num_classes: not an image classifier
            if e.option != "num_classes":
                raise
            raise UserInputError(f"zoo {name}: not an image classifier; graphmill train trains models of one input "
                                 "[N, C, S, S] (e.g. resnet18, mobilenet_v2, efficientnetv2_s, coatnet_0)") from None
        shown = {("embed_dim" if contrastive and k == "num_classes" else k): v for k, v in opts.items()}
        cfg.model = f"zoo {name} " + " ".join(f"{k}={v}" for k, v in shown.items() if v is not None)
    size = graph.inputs[0].shape[-1] if graph.inputs and graph.inputs[0].shape else None
    if isinstance(size, int) and size > MAX_TRAIN_SIZE:  # a 520-byte file of [N, 1, 40000, 40000] asked torch for
        # 11.5 TB of upsampled digits, a traceback (an outside check): the same cap as --max-size
        raise UserInputError(f"{cfg.model}: takes {size}x{size} images, over the {MAX_TRAIN_SIZE} px graphmill train "
                             "trains at (the task's 8x8 digits are upsampled to the model's size)")
    if max_size is not None and isinstance(size, int) and size != max_size:
        raise UserInputError(f"--max-size {max_size}: {cfg.model} takes {size}x{size} images (the final size is the "
                             "model's own)")
    # the count is recorded, a resume without --threads takes the checkpoint's (the resume command printed after
    # Ctrl-C names none; a review), and a resume with another --threads is refused
    with torch_threads(threads, checkpoint if resume else None) as cfg.threads:
        return _train_and_write(graph, cfg, model=model, out=out, checkpoint=checkpoint, resume=resume,
                                progress=progress)


def _train_and_write(graph: Graph, cfg, *, model, out: str, checkpoint: str, resume: bool, progress) -> dict:
    """``train``'s checks of the model, the training and its files (model.onnx, history.json, report.json)."""
    import json

    from graphmill.backends.torch import to_torch
    from graphmill.backends.torch.training import check_logits, check_model, check_stage_sizes, run_training
    from graphmill.frontend.onnx_io import serialize_model
    from graphmill.util.errors import naming_file
    from graphmill.util.files import atomic_write_many, no_empty_folder_left

    # the checks name the graph and its nodes; a file given says which file
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) and os.path.exists(model) else None
    with naming_file(source):
        check_trainable(graph)
        check_model(graph, cfg)
        module = to_torch(graph)  # the torch backend's refusals (weights cse merged, attributes, dtypes) before OUT
        check_logits(graph, cfg, module)
        check_stage_sizes(graph, cfg, module)
    with no_empty_folder_left(out):  # refused or interrupted before the first checkpoint: no empty OUT behind
        os.makedirs(out, exist_ok=True)
        with naming_file(source):  # a refusal from the first step (dropout with no place to go) names the file too
            run = run_training(graph, cfg, checkpoint=checkpoint, resume=resume, progress=progress)
    report = run.to_dict()
    files = {"model": os.path.join(out, "model.onnx"), "history": os.path.join(out, "history.json"),
             "report": os.path.join(out, "report.json"), "checkpoint": checkpoint}
    if run.loop.interrupted:  # only what is there: it named model.onnx, history.json and report.json (an outside check)
        files = {k: v for k, v in files.items() if k == "checkpoint" and os.path.exists(v)}
    report["files"] = files
    report["history"] = run.loop.history  # in report.json too: it is the --json report (it lacked the history)
    if not run.loop.interrupted:
        def js(d) -> bytes:
            return (json.dumps(d, indent=2, default=str) + "\n").encode()
        atomic_write_many([(files["model"], serialize_model(graph)), (files["history"], js(run.loop.history)),
                           (files["report"], js(report))])
    return report


# -- learned passes (issue 14) ------------------------------------------------------------------------------------

def check_place_checkpoint(method: str, budget: int, checkpoint: str | None) -> None:
    """Refuse a checkpoint for a placement that keeps no state to resume: only rl, hierarchical, and learned
    with a fine-tuning budget do (a heuristic, or learned's zero-shot alone, takes seconds); and a budget for a
    heuristic, which samples nothing."""
    if checkpoint and not (method in ("rl", "hierarchical") or (method == "learned" and budget)):
        raise UserInputError(f"--checkpoint {checkpoint}: only --method rl, hierarchical, or learned with --budget N "
                             f"(its fine-tuning) checkpoints (a {method} run"
                             + (" without --budget" if method == "learned" else "") + " keeps no state to resume)")
    if budget and method not in ("rl", "hierarchical", "learned"):  # it was ignored without a word (an outside check)
        raise UserInputError(f"--budget {budget}: only --method rl, hierarchical or learned sample placements; "
                             f"{method} is a heuristic that takes none")


def _learned_place(graph: Graph, model, *, budget: int, seed: int, options: dict | None, progress,
                   checkpoint: str | None = None) -> "object":
    """``place(method="learned")``: the baselines placed and scheduled as ``place`` does (the report's
    ``baselines``), then the learned policy's devices (``learned-place``: graph order, no fusion, the placement
    report's rules; its features start from the best baseline's placement) from its greedy decisions and
    ``samples`` draws (option, default 16), fine-tuned for ``budget`` more simulated samples when > 0 (options:
    ``policy``, ``samples``). As the rl placers, it returns the best placement evaluated, baselines included.
    ``checkpoint``: the fine-tuning's (``search.learned.fine_tune``); a rerun repeats the zero-shot part
    (deterministic, seconds) and continues the fine-tuning where the checkpoint left it."""
    import time

    import numpy as np

    from graphmill.passes.learned.passes import decisions_from_graph, run_learned
    from graphmill.passes.placement import build_problem
    from graphmill.passes.placement.place import (PlaceResult, apply_placement, baseline_candidates, check_fits,
                                                  evaluate, make_report, memory_excess)

    opts = dict(options or {})
    policy_path = str(opts.pop("policy", "") or "")
    samples = int(opts.pop("samples", 16))
    if opts:
        raise UserInputError(f"unknown learned placement option {sorted(opts)[0]!r}; known: policy, samples")
    # every baseline, none refused for its memory (place_graph(method="heft") refused the run when HEFT's did)
    prob = build_problem(graph, model)
    check_fits(prob, graph.name)
    cands, base_info = baseline_candidates(prob, seed)
    valid = [c for c in cands.values() if c.valid]
    best_base = min(valid, key=lambda c: c.schedule.makespan) if valid else None
    hint = None if best_base is None else np.asarray(best_base.placement)
    t0 = time.perf_counter()
    seen: set = set()  # every state zero-shot simulated: fine-tuning below repeats none of them
    jp, dec, out, stats = run_learned(graph, model, "learned-place", policy_path=policy_path, samples=samples,
                                      seed=seed, hint=hint, seen=seen)
    reach = [k + 1 for k, t in enumerate(stats["candidates"]) if best_base is not None and
             t <= best_base.schedule.makespan]  # the policy's own samples, the hint (from_sample -1) not counted
    learned = {"samples": len(stats["candidates"]), "steps": 0,
               "best_from": "zero-shot" if stats["from_sample"] >= 0 or best_base is None else best_base.method,
               "samples_to_best_baseline": reach[0] if reach else None}
    if budget:
        from graphmill.passes.learned.passes import combine, policy_for
        from graphmill.search.learned import fine_tune, make_task

        task = make_task(graph.name, graph, model, hint=hint)
        keep = decisions_from_graph(graph, task.jp)
        # the best VALID baseline (README): an invalid one's step time is not achievable, as a reference it made
        # the progress ratio and samples_to_best_baseline count against a placement that does not fit
        ref = None if best_base is None else best_base.schedule.makespan
        # from zero-shot's best state, its rounds already run: the budget buys new simulations, each counted once
        ft = fine_tune(policy_for(policy_path), task, budget=budget, seed=seed, progress=progress, reference=ref,
                       transform=lambda d: combine(d, keep, {"place"}, task.jp), start=(dec, out), rounds=0,
                       seen=seen, checkpoint=checkpoint)
        learned.update(samples=learned["samples"] + ft["samples"], steps=ft["steps"],
                       samples_to_best_baseline=learned["samples_to_best_baseline"] or (
                           None if ft["samples_to_reference"] is None else
                           learned["samples"] + ft["samples_to_reference"]))
        if ft["outcome"] is not None and ft["outcome"].makespan < out.makespan:
            out = ft["outcome"]
            learned["best_from"] = "fine-tune"
    placement = [int(d) for d in out.device]
    cand = evaluate(prob, placement, "learned", time.perf_counter() - t0)
    if best_base is not None and (not cand.valid or best_base.schedule.makespan < cand.schedule.makespan):
        # as the rl placers: never worse than the best valid baseline (best_from says which one won)
        learned["best_from"] = best_base.method
        placement = list(best_base.placement)
        cand = evaluate(prob, placement, "learned", cand.seconds)
    if not cand.valid:  # then no baseline was valid either (above): said as the rl placers say it
        raise UserInputError(f"the learned placer found no placement of graph {graph.name!r} that fits the devices' "
                             f"memory in {learned['samples']} samples (nor did any baseline); its best: "
                             f"{memory_excess(cand.schedule.peak, prob.capacity, prob.device_names)}")
    apply_placement(graph, prob, placement)
    report = make_report(prob, "learned", cand, cands)
    graph.meta["placement"] = {"method": "learned", "makespan": cand.schedule.makespan, "units": prob.units,
                               "devices": list(prob.device_names)}
    info = dict(base_info)
    info["wall_s"]["learned"] = cand.seconds
    info["learned"] = learned
    return PlaceResult(report, prob, cand.schedule, dict(cands, learned=cand), info)


LEARNED_PASSES = ("learned-optimize", "learned-place", "learned-fuse", "learned-schedule")


def learned_optimize(graph: Graph, *, passes: str | list[str] = "learned-optimize", devices: int | None = None,
                     devices_file: str | None = None, accel=None, memory_gb: float | None = None,
                     cost: str = "roofline", training: bool = False, policy: str | None = None, samples: int = 0,
                     finetune: int = 0, seed: int = 0, progress=None, dims: dict[str, int] | None = None) -> dict:
    """Run the learned passes (README, "Learned passes") on ``graph`` in place (``dims`` binds its symbolic
    dimensions, e.g. the zoo's batch ``{"N": 8}``, as ``place``'s ``--dim``): ``passes`` one of
    ``learned-optimize`` (placement, fusion and scheduling jointly) or a sequence of ``learned-place``,
    ``learned-fuse``, ``learned-schedule`` (each keeps what the others wrote). ``policy``: a policy file (default:
    the shipped one); ``samples``: policy draws simulated per round besides its greedy, top-k and unit decisions
    (default 0, as the passes' option and the benchmark); ``finetune``: more
    samples of PPO fine-tuning on this graph (joint pass only). Devices as ``place``; ``training=True``
    optimizes the training step. Returns ``{"passes", "devices", "units", "makespan", "best_baseline": {"name",
    "makespan"} (the best of every combination of the three parts' baselines), "held_to": {"name", "makespan"} (the
    start the last pass refined, which it is never worse than: for ``learned-optimize`` the best baseline, for a
    pass deciding one part the best of that part's baselines with the rest as the graph held them, "kept" in the
    name; the graph's own decisions where those were faster), "placement": {op: device}, "fusion_groups": [[op]],
    "priority": {op: number}, "order": {device: [op]}, "refused": [reason], "memory": {"capacity", "peak"},
    "finetune": {"samples", "samples_to_best_baseline", "improved"} | None}`` plus what a re-simulation needs
    (``passes.learned.passes.replay_tables``: ``op_time``, ``group_time``, ``values``, ``link``) (``finetune``'s
    count is of fine-tuning's own samples, from zero-shot's best, until one is at or under the best baseline; None
    when none is); the decisions also travel in the graph's meta (``graph.meta["learned"]`` with the device set,
    node meta ``device``, ``fusion_group``, ``priority``) so that ``learned_replay`` re-simulates them."""
    require_graph(graph, "api.learned_optimize")
    from graphmill.backends.simulator.devices import PlacementCostModel, device_set
    from graphmill.ir.naming import name_nodes
    from graphmill.passes.learned.baselines import best_baseline
    from graphmill.passes.learned.passes import (apply_decisions, combine, decisions_from_graph, decisions_report,
                                                 policy_for, run_learned)
    from graphmill.passes.placement import training_graph

    if not isinstance(passes, (str, list, tuple)):  # None: "'NoneType' object is not iterable"
        raise UserInputError(f"passes={passes!r:.40}: a learned pass's name or a list of them")
    seq = [passes] if isinstance(passes, str) else list(passes)
    if not seq:  # an UnboundLocalError from the loop that runs none (an outside check)
        raise UserInputError(f"passes: none given; choose from {', '.join(LEARNED_PASSES)}")
    for p in seq:
        if p not in LEARNED_PASSES:
            raise UserInputError(f"unknown learned pass {p!r}; choose from {', '.join(LEARNED_PASSES)}")
    samples, finetune = (check_count(v, f"--{name}") for name, v in (("samples", samples), ("finetune", finetune)))
    check_flags("graphmill.api.learned_optimize", training=training)
    if finetune and "learned-optimize" not in seq:  # it was ignored: fine-tuning runs for the joint pass only
        raise UserInputError(f"finetune={finetune}: only the joint pass learned-optimize fine-tunes; passes {seq} "
                             "do not")
    if cost not in ("roofline", "simulator"):
        raise UserInputError(f"--cost {cost!r}: choose roofline or simulator")
    ds = device_set(devices=devices, accel=accel, devices_file=devices_file, memory_gb=memory_gb)
    model = PlacementCostModel(ds, cost)
    _static_sizes(graph, dims)  # its refusal of a free symbol says "api: dims=": the parameter is this one
    name_nodes(graph)
    target = training_graph(graph) if training else graph
    pol = policy_for(policy or "")
    ft_info = None
    for p in seq:
        seen: set = set()
        jp, dec, out, stats = run_learned(target, model, p, samples=samples, seed=seed, policy=pol, seen=seen)
        if finetune and p == "learned-optimize":
            from graphmill.search.learned import fine_tune, make_task

            task = make_task(target.name, target, model)
            ft = fine_tune(pol, task, budget=finetune, seed=seed, progress=progress, start=(dec, out), rounds=0,
                           seen=seen)
            ft_info = {"samples": ft["samples"], "samples_to_best_baseline": ft["samples_to_reference"],
                       "improved": bool(ft["outcome"] is not None and ft["outcome"].makespan < out.makespan)}
            if ft_info["improved"]:
                dec, out = ft["decisions"], ft["outcome"]
        apply_decisions(target, jp, dec, out, p)
    bb = best_baseline(jp)
    target.meta["learned"].update({"device_set": ds.to_dict(), "cost": cost, "passes": seq})
    for g in {id(graph): graph, id(target): target}.values():  # an earlier placement's meta is stale now
        g.meta.pop("placement", None)
    if training:
        by_name = {n.name: n.meta.get("device") for n in target.nodes}
        for n in graph.nodes:
            if n.name in by_name:
                n.meta["device"] = by_name[n.name]
        graph.meta["learned"] = dict(target.meta["learned"], training=True)
    return {"passes": seq, **decisions_report(jp, dec, out),
            "best_baseline": {"name": bb.name, "makespan": bb.outcome.makespan}, "held_to": stats["held_to"],
            "finetune": ft_info}


def learned_replay(graph: Graph, *, decisions: bool = False) -> dict | None:
    """Re-simulate the decisions the learned passes left in ``graph`` (its meta) on the device set they were made
    for: ``{"makespan", "peak", "units", "devices"}``; None when no learned pass ran on it. ``decisions``: the
    decisions themselves too, in ``learned_optimize``'s report schema (``placement``, ``fusion_groups``,
    ``priority``, ``order``, ``memory`` and the tables a re-simulation outside graphmill needs), for a graph
    the passes ran on in a schedule (``optimize``'s report key ``learned``)."""
    require_graph(graph, "api.learned_replay")
    check_flags("graphmill.api.learned_replay", decisions=decisions)
    from graphmill.backends.simulator.devices import PlacementCostModel, cost_from_meta, device_set_from_meta
    from graphmill.passes.learned.passes import decisions_report, replay_state

    meta = graph.meta.get("learned")
    if not isinstance(meta, dict) or "device_set" not in meta:
        return None
    devset = device_set_from_meta(meta["device_set"], f"graph {graph.name!r}: the device set of its learned passes")
    model = PlacementCostModel(devset, cost_from_meta(meta, f"graph {graph.name!r}: its learned passes"))
    jp, dec, out = replay_state(graph, model)
    from graphmill.passes.placement.place import memory_excess

    over = memory_excess(out.peak, devset.memory, devset.names)
    if over is not None:  # as the placement replay refuses one: it was replayed as a valid step (a review)
        raise UserInputError(f"graph {graph.name!r}: its learned decisions are invalid: {over}; run the learned "
                             "passes again")
    brief = {"makespan": out.makespan, "peak": [float(x) for x in out.peak], "units": model.units,
             "devices": model.names}
    return {**brief, **decisions_report(jp, dec, out)} if decisions else brief


_POLICY_OPTION_RANGES = {  # train-policy option: (low, low excluded, high)
    # samples: PPO's advantages are normalized within a graph's samples, all 0 for one (it trained on the entropy
    # term alone, every loss 0.0000; an outside check)
    "steps": (1, False, math.inf), "graphs": (1, False, math.inf), "samples": (2, False, math.inf),
    "epochs": (1, False, math.inf), "clip": (0, True, math.inf), "lr": (0, True, math.inf),
    "entropy": (0, False, math.inf), "penalty": (0, False, math.inf), "hidden": (1, False, math.inf),
    "layers": (1, False, math.inf), "time_limit": (0, True, math.inf), "reset": (0, False, 1)}


def train_policy(output: str | os.PathLike, *, steps: int | None = None, seed: int = 0, quick: bool = False,
                 options: dict | None = None, checkpoint: str | None = None, progress=None,
                 command: str = "") -> dict:
    """Train the learned passes' policy with PPO on the default training set (``graphmill.search.learned``:
    zoo models forward and as training steps, random DAGs, 2/4/8 devices) and write it to ``output`` (.npz
    with its .json: architecture, training set, seed, options, time, ``command``). ``quick``: a small
    training set (tests). Returns ``{"output", "steps", "total_steps", "samples", "seconds", "resumed", "final",
    "interrupted", "checkpoint"}``: a run stopped by Ctrl-C (after the step under way) writes no policy
    (``output`` None) and names the ``checkpoint`` that resumes it (None without one). ``command``, the command
    line recorded beside the policy, gets the variables of ``search.learned.PORTABLE_ENV`` this process was
    started with in front of it (``ATEN_CPU_CAPABILITY=default ... graphmill train-policy ...``), so that rerunning
    it on another CPU trains the same policy bit for bit."""
    check_flags("graphmill.api.train_policy", quick=quick)
    import time

    from graphmill.backends.simulator.devices import PlacementCostModel, device_set
    from graphmill.search.learned import PORTABLE_ENV, make_task, train, training_set
    from graphmill.util.files import check_target

    output = os.fspath(output)
    if not output.endswith(".npz"):
        raise UserInputError(f"{output}: a policy file ends in .npz (its metadata goes beside it in .json)")
    check_target(output)
    seed = check_seed(seed)
    from graphmill.search.learned import DEFAULTS

    if checkpoint:
        check_target(os.fspath(checkpoint))
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise UserInputError(f"unknown train-policy option {unknown[0]!r}{did_you_mean(unknown[0], DEFAULTS)}; "
                             f"known: {', '.join(DEFAULTS)}")
    for key, value in opts.items():  # bad values failed after the training set was built, as torch tracebacks
        low, strict, high = _POLICY_OPTION_RANGES.get(key, (-math.inf, False, math.inf))
        whole = isinstance(DEFAULTS[key], int)
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not number or (whole and value != int(value)) or value < low or (strict and value == low) or value > high:
            rng = f"{'>' if strict else '>='} {low:g}" + ("" if high == math.inf else f" and <= {high:g}")
            raise UserInputError(f"--option {key}={value!r}: must be {'a whole number' if whole else 'a number'} "
                                 f"{rng}")
    from graphmill.passes.learned.policy import policy_config

    try:  # the sizes load_policy takes: a policy trained beyond them was written, then refused (a review)
        policy_config({k: int(opts[k]) for k in ("hidden", "layers") if k in opts})
    except ValueError as e:
        raise UserInputError(f"--option: {e} (the sizes a policy file may have)") from None
    if steps is not None:
        steps = check_count(steps, "--steps", 1)
        if "steps" in opts and opts["steps"] != steps:  # --steps won silently (an outside check)
            raise UserInputError(f"--steps {steps} and --option steps={opts['steps']!r} disagree; give one")
        opts["steps"] = steps
    t0 = time.perf_counter()
    tasks = [make_task(n, g, PlacementCostModel(device_set(devices=D))) for n, g, D in training_set(quick=quick)]
    if progress:
        progress(f"train-policy: {len(tasks)} training graphs ready in {time.perf_counter() - t0:.1f} s")
    env = {k: os.environ[k] for k in PORTABLE_ENV if k in os.environ}
    if command:
        command = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + (" " if env else "") + command
    _, info = train(tasks, seed=seed, options=opts, checkpoint=checkpoint, progress=progress, output=output,
                    meta={"command": command, "environment": env, "cost": "roofline", "accel": "placement-default"})
    last = info["history"][-1] if info["history"] else {}
    stopped = info["interrupted"]
    return {"output": None if stopped else output, "steps": info["steps"],
            "total_steps": info["total_steps"], "samples": info["samples"],
            "seconds": info["seconds"], "resumed": info["resumed"], "final": last.get("mean_time_vs_best_baseline"),
            "interrupted": stopped,
            "checkpoint": os.fspath(checkpoint) if stopped and checkpoint and os.path.exists(checkpoint) else None}


CHIP_METHODS = ("fd", "sa", "rl")


def chip_load(netlist: str | os.PathLike, init: str | os.PathLike):
    """Read a Circuit Training netlist and its ``.plc`` placement: ``(graph, plc)``, the graph placed as the file
    says. Refused in one line: a malformed netlist (line, column), a ``.plc`` whose nodes or counts do not
    match, macros whose total area exceeds the canvas."""
    from graphmill.frontend.chip.netlist import read_netlist
    from graphmill.frontend.chip.plc import apply_plc, read_plc
    from graphmill.passes.chip.problem import ChipPlacementError, problem_from_graph

    graph = read_netlist(netlist)
    plc = read_plc(init)
    apply_plc(graph, plc)
    try:
        problem_from_graph(graph).check_area()
    except ChipPlacementError as e:  # the canvas is the .plc's, the macros' sizes the netlist's: name both (the
        # .plc alone was named for a macro the netlist made too wide: an outside check)
        raise ChipPlacementError(f"{os.fspath(netlist)} on the canvas of {plc.path}: {e}") from None
    return graph, plc


def chip_cost(netlist: str | os.PathLike, placement: str | os.PathLike,
              weights: tuple[float, float, float] = (1.0, 0.5, 0.5)) -> dict:
    """The proxy cost of a placement as Circuit Training's evaluator computes it, and its legality:
    ``{"proxy", "wirelength", "density", "congestion", "legal", "why_illegal"}`` (``why_illegal``: None, or what
    makes it illegal: a hard macro outside the canvas, overlapping pairs)."""
    from graphmill.passes.chip.cost import proxy_cost
    from graphmill.passes.chip.legality import legality
    from graphmill.passes.chip.problem import problem_from_graph

    graph, _ = chip_load(netlist, placement)
    problem = problem_from_graph(graph)
    legal, why = legality(problem)
    return dict(proxy_cost(problem, tuple(weights)).as_dict(), legal=legal, why_illegal=None if legal else why)


def _check_chip_options(method: str, options: dict | None) -> None:
    """An unknown placer option refused in one line naming the ones there are (it was a TypeError)."""
    import inspect

    from graphmill.passes.chip.rl import rl_place
    from graphmill.passes.chip.sa import anneal, force_directed

    placer = {"fd": force_directed, "sa": anneal, "rl": rl_place}[method]
    known = sorted(set(inspect.signature(placer).parameters) - {"problem", "weights", "budget_s", "seed", "progress"})
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise UserInputError(f"unknown {method} option {unknown[0]!r}; known: {', '.join(known) or 'none'}")


def chip_place(netlist: str | os.PathLike, init: str | os.PathLike, *, method: str = "sa",
               output: str | os.PathLike | None = None, budget_s: float = 60.0, seed: int = 0,
               weights: tuple[float, float, float] = (1.0, 0.5, 0.5), json_path: str | os.PathLike | None = None,
               plot: str | os.PathLike | None = None, progress=None, options: dict | None = None,
               info: dict | None = None) -> dict:
    """Place a netlist's macros (``graphmill chip place``): ``method`` fd (force-directed soft macros), sa
    (simulated annealing) or rl (the RL placer) for ``budget_s`` seconds from ``init``'s placement; write
    ``output`` (a ``.plc`` with ``init``'s header fields and the new cost components), ``json_path`` and ``plot``
    (canvas PNG) together at the end, also after Ctrl-C (the best placement so far). rl keeps its training state
    in ``output`` + ``.rl-checkpoint`` while it runs (removed when it finishes; an interrupted run's rerun
    resumes from it). Returns the report
    ``{"proxy", "wirelength", "density", "congestion", "legal", "seconds", "method"}``; ``info`` (a dict) receives
    ``interrupted``, the placer's statistics and, for a placement that is not legal, ``why_illegal``."""
    import math

    from graphmill.frontend.chip.plc import placement_text
    from graphmill.passes.chip.legality import legality
    from graphmill.passes.chip.problem import ChipPlacementError, problem_from_graph
    from graphmill.util.files import atomic_write_many, check_output_paths

    if method not in CHIP_METHODS:
        raise UserInputError(f"--method {method!r}: choose fd, sa or rl")
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s > 0 or not math.isfinite(budget_s):
        raise UserInputError(f"--budget-s {budget_s!r}: must be a number of seconds > 0")
    seed = check_seed(seed)
    weights = tuple(float(v) for v in weights)
    if len(weights) != 3 or not all(math.isfinite(v) and v >= 0 for v in weights) or not any(weights):
        raise UserInputError(f"--weights {','.join(map(str, weights))}: three numbers >= 0, not all 0 (wirelength, "
                             "density, congestion)")
    check_output_paths({"NETLIST": netlist, "--init": init}, {"-o": output, "--json": json_path, "--plot": plot})
    if method == "rl" and output and "checkpoint" not in (options or {}):  # rl's resume state, beside -o
        check_output_paths({}, {"--json": json_path, "--plot": plot,
                                "the rl checkpoint": os.fspath(output) + ".rl-checkpoint"})
    check_png_path(plot)
    _check_chip_options(method, options)
    graph, plc = chip_load(netlist, init)
    problem = problem_from_graph(graph)
    fixed_hard = problem.hard[problem.fixed[problem.hard] != 0]
    legal, why = legality(problem, fixed_hard)
    if not legal:  # no move can mend it: the placers stopped at once with an illegal result and said nothing
        raise ChipPlacementError(f"{plc.path}: the fixed hard macros alone are not legal ({why}): no placement "
                                 "can be; move them inside the canvas and apart, or unfix them (last field 0)")
    if method == "fd":
        from graphmill.passes.chip.sa import force_directed
        result = force_directed(problem, weights=weights, budget_s=budget_s, seed=seed, progress=progress,
                                **(options or {}))  # none: an option given is refused, not ignored
    elif method == "sa":
        from graphmill.passes.chip.sa import anneal
        result = anneal(problem, weights=weights, budget_s=budget_s, seed=seed, progress=progress,
                        **(options or {}))
    else:
        from graphmill.passes.chip.rl import rl_place
        opts = dict(options or {})
        if output and "checkpoint" not in opts:  # training state beside the output: a rerun resumes from it
            opts["checkpoint"] = os.fspath(output) + ".rl-checkpoint"
        result = rl_place(problem, weights=weights, budget_s=budget_s, seed=seed, progress=progress, **opts)
        if not result.interrupted and opts.get("checkpoint") and os.path.exists(opts["checkpoint"]):
            os.unlink(opts["checkpoint"])
    problem.write_back(graph)
    r = result.report
    report = {"proxy": r.proxy, "wirelength": r.wirelength, "density": r.density, "congestion": r.congestion,
              "legal": bool(result.legal), "seconds": round(result.seconds, 3), "method": method}
    files: list[tuple[str, bytes]] = []
    if output:
        c = problem.canvas
        costs = {"wirelength": r.wirelength, "density": r.density, "congestion": r.congestion,
                 "hpwl": r.wirelength * (c.width + c.height) * problem.net_count}
        files.append((os.fspath(output), placement_text(graph, plc, costs).encode()))
    if json_path and json_path != "-":
        import json

        files.append((os.fspath(json_path), (json.dumps(report, indent=2) + "\n").encode()))
    if plot:
        from graphmill.passes.chip.cost import ProxyCost
        from graphmill.passes.chip.plot import placement_png

        files.append((os.fspath(plot), placement_png(ProxyCost(problem, weights))))
    atomic_write_many(files)
    if info is not None:
        info.update(result.stats, interrupted=result.interrupted)
        if not result.legal:  # the reason, for the command's failure line (the report's keys are fixed)
            info["why_illegal"] = legality(problem)[1]
    return report


# -- weight-sharing supernet (graphmill supernet, issue 15) --------------------------------------------------------


def supernet_train(out: str | os.PathLike, *, steps: int | None = None, seed: int = 0, spec=None,
                   threads: int | None = None, progress=None, report: str | os.PathLike | None = None) -> dict:
    """``graphmill supernet train``: train (or continue, from OUT/checkpoint.pt) a BigNAS supernet on the shipped
    task (scikit-learn's digits) and write OUT/supernet.onnx and OUT/supernet.json
    (``graphmill.search.oneshot.train``). ``spec`` defaults to the digits space (``oneshot.DIGITS_SPEC``);
    ``steps`` to 1200 (``TrainOptions``). Returns the run's report (``interrupted`` True after Ctrl-C: the
    checkpoint stands and the same call continues it), also written to ``report`` when the run finishes (the
    path checked before any training)."""
    from graphmill.search.oneshot import DIGITS_SPEC, TrainOptions, check_report_path, train_supernet
    from graphmill.util.files import no_empty_folder_left, write_json

    if report is not None:
        check_report_path(out, report)
    opts = TrainOptions(seed=seed, spec=spec or DIGITS_SPEC)
    if steps is not None:
        opts.steps = steps
    with no_empty_folder_left(out):
        result = train_supernet(out, opts, progress=progress, threads=threads).to_dict()
    if report is not None and not result["interrupted"]:
        write_json(report, result)
    return result


def supernet_select(path: str | os.PathLike, *, output: str | os.PathLike, max_macs: float | None = None,
                    max_params: float | None = None, max_latency_ms: float | None = None, accel: str | None = None,
                    config: dict | None = None, report: str | os.PathLike | None = None, progress=None,
                    plot: str | os.PathLike | None = None) -> dict:
    """``graphmill supernet select``: the most accurate child of the supernet trained in ``path`` under one
    constraint (coarse-to-fine, ``graphmill.search.oneshot.select``), or the child ``config`` when given;
    written to ``output`` as a standard ONNX model with the inherited weights (statistics recalibrated).
    Returns exactly ``{"macs", "params", "accuracy", "latency_ms", "config"}`` (also written to ``report``);
    latency is simulated on ``accel`` (default: the search's edge accelerator). ``plot``: a PNG of validation
    accuracy against MACs, parameters and latency of the coarse grid's children and those the selection
    evaluated, with each Pareto front (``oneshot.plot``; a few seconds more). ``config`` may be an earlier
    report (its ``"config"`` is taken). Everything is checked before anything is written."""
    from graphmill.search.oneshot import ChildEvaluator, check_constraint, check_outputs, load_supernet, select_child
    from graphmill.search.oneshot.select import CONSTRAINTS, UNITS
    from graphmill.util.files import write_json

    given = {k: v for k, v in (("macs", max_macs), ("params", max_params), ("latency_ms", max_latency_ms))
             if v is not None}
    if len(given) > 1:
        raise UserInputError(f"give one constraint, not {len(given)} ({', '.join(CONSTRAINTS[k] for k in given)})")
    if not given and config is None:
        raise UserInputError("give a constraint: --max-macs, --max-params or --max-latency-ms (with --accel)")
    if max_latency_ms is not None and accel is None:
        raise UserInputError("--max-latency-ms needs --accel A.toml (the accelerator the latency is simulated on)")
    kind, limit = next(iter(given.items())) if given else (None, None)
    if kind is not None:
        limit = check_constraint(kind, limit)
    check_outputs(path, output, report, plot, accel)  # writable, not one file twice, not an input
    accel_cfg = load_accel(accel) if accel is not None else None
    graph, spec, _info = load_supernet(path)
    ev = ChildEvaluator(graph, spec, accel=accel_cfg)
    if config is not None:
        if isinstance(config.get("config"), dict) and {"macs", "params"} <= config.keys():
            config = config["config"]  # an earlier select's report: its child (a child has no "config" key)
        chosen = spec.check(config)
        if kind is not None and ev.metric(kind, chosen) > limit:
            raise UserInputError(f"the child given does not satisfy {CONSTRAINTS[kind]} {at_most(limit)}: it needs "
                                 f"{at_least(ev.metric(kind, chosen))} {UNITS[kind]}")
        result, selection = ev.report(chosen), None
    else:
        selection = select_child(ev, kind, limit, progress=progress)
        result = selection.report
    save(ev.child_graph(result["config"]), output)
    if report is not None:
        write_json(report, result)
    if plot is not None:
        from graphmill.search.oneshot.plot import children_points, plot_children

        plot_children(plot, children_points(ev, selection, progress), result["config"], kind, limit)
    return result
