"""The ``graphmill`` command. Thin: it parses arguments and calls the Python API.

Every failure the user can fix is a ``GraphmillError``: one line on stderr and
exit status 2. Nothing is written unless the command succeeds, and an input
model is never overwritten unless ``--force`` says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from typing import Sequence

from graphmill import api
from graphmill.ir import GraphmillError, UserInputError

log = logging.getLogger("graphmill")


def _fmt_count(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n:,} ({n / scale:.2f} {unit})"
    return f"{n:,}"


def _write_json(data: dict, dest: str | None) -> None:
    text = json.dumps(data, indent=2, default=str)
    if dest in (None, "-"):
        print(text)
    else:
        from graphmill.util.files import atomic_write_bytes

        atomic_write_bytes(dest, (text + "\n").encode())


def print_summary(report: dict, out=sys.stdout) -> None:
    p = lambda s="": print(s, file=out)  # noqa: E731
    opsets = ", ".join(f"{d}:{v}" for d, v in report["opsets"].items())
    p(f"model:   {report.get('file', report['name'])}  (graph {report['name']!r}, opsets {opsets})")
    p(f"nodes:   {report['nodes']:,}")
    params = _fmt_count(report["params"])
    if report.get("unknown_params"):
        params += f"  + {report['unknown_params']} tensor(s) of unknown size"
    p(f"params:  {params}")
    macs = _fmt_count(report["macs"])
    if report.get("symbols"):
        macs += "  with " + ", ".join(f"{k}={v}" for k, v in report["symbols"].items())
    if report.get("cost_unknown_nodes"):
        macs += f"  ({report['cost_unknown_nodes']} node(s) with unknown shapes not counted)"
    p(f"MACs:    {macs}")
    if report.get("ops_without_cost"):
        p("         no cost model for: " + ", ".join(f"{k} x{v}" for k, v in report["ops_without_cost"].items()))
    for problem in report.get("problems", [])[:10]:
        p(f"warning: {problem}")
    if len(report.get("problems", [])) > 10:
        p(f"warning: ... and {len(report['problems']) - 10} more problem(s) (see --json)")
    p("inputs:")
    for i in report["inputs"]:
        p(f"  {i['name']:<32} {i['text']}")
    p("outputs:")
    for o in report["outputs"]:
        p(f"  {o['name']:<32} {o['text']}")
    p("ops:")
    for op, n in report["ops"].items():
        p(f"  {op:<32} {n:>6}")


# -- subcommands -------------------------------------------------------------------------------

def parse_dims(items: Sequence[str] | None) -> dict[str, int]:
    """``["N=8", "seq=128"]`` -> ``{"N": 8, "seq": 128}``."""
    dims: dict[str, int] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            dims[name.strip()] = int(value)
            if dims[name.strip()] < 0 or not name.strip():
                raise ValueError
        except ValueError:
            raise UserInputError(f"--dim {item!r}: expected NAME=SIZE with a non-negative integer size") from None
    return dims


def cmd_inspect(args: argparse.Namespace) -> int:
    report = api.inspect_file(args.model, dims=parse_dims(args.dim))
    if args.json:
        _write_json(report, None)
    else:
        print_summary(report)
    return 0


def check_output_path(out: str, inputs: Sequence[str], force: bool) -> None:
    """Refuse to overwrite an input model (or a weights file it reads) unless the user asked for it."""
    if force or not out or not os.path.exists(out):
        return
    for src in inputs:
        if os.path.exists(src) and os.path.samefile(src, out):
            what = "the input model" if src == inputs[0] else f"{src}, which the input model reads its weights from"
            raise UserInputError(f"{out}: refusing to overwrite {what}; pick another -o or pass --force")


def save_output(graph, args: argparse.Namespace) -> None:
    """Save with the input's layout: weights go to an external file when the input had one."""
    from graphmill.frontend.onnx_io import external_data_files

    external = external_data_files(graph)
    location = getattr(args, "external_data", None)
    if location is None and external:
        location = os.path.basename(args.output) + ".data"
    protected = [args.model, *sorted(external)]
    check_output_path(args.output, protected, args.force)
    if location:
        check_output_path(os.path.join(os.path.dirname(os.path.abspath(args.output)), location), protected,
                          args.force)
    api.save(graph, args.output, external_data=location)


def cmd_roundtrip(args: argparse.Namespace) -> int:
    check_output_path(args.output, [args.model], args.force)
    graph = api.load(args.model)
    save_output(graph, args)
    info = {"input": args.model, "output": args.output, "nodes": len(list(graph.all_nodes())),
            "bytes": os.path.getsize(args.output)}
    if args.json:
        _write_json(info, None)
    else:
        print(f"wrote {args.output} ({info['nodes']} nodes, {info['bytes']:,} bytes)")
    return 0


def cmd_passes(args: argparse.Namespace) -> int:
    from graphmill.passes import registered_passes
    from graphmill.passes.rewrite_pass import RewritePass

    rows = []
    for name, cls in registered_passes().items():
        rules = [{"name": r.name, "exactness": r.exactness, "doc": r.doc} for r in getattr(cls, "rules", ())] \
            if issubclass(cls, RewritePass) else []
        rows.append({"name": name, "doc": cls.doc(), "exactness": cls.exactness,
                     "options": [{"name": o.name, "type": o.type.__name__, "default": o.default, "doc": o.doc,
                                  **({"choices": list(o.choices)} if o.choices else {})} for o in cls.options],
                     "rules": rules})
    if args.json:
        _write_json({"passes": rows}, None)
        return 0
    for r in rows:
        first, _, rest = r["doc"].partition("\n")
        print(f"{r['name']}  ({r['exactness']})\n    {first}")
        for o in r["options"]:
            print(f"    {o['name']}: {o['type']} = {o['default']!r}  {o['doc']}")
        for rule in r["rules"]:
            print(f"    rule {rule['name']} [{rule['exactness']}]")
    return 0


def _summary_line(label: str, before: float, after: float, fmt: str = "{:,}") -> str:
    delta = "" if before == after else f"  ({(after - before) / before * 100:+.1f}%)" if before else ""
    return f"  {label:<10}{fmt.format(before):>18} -> {fmt.format(after):<18}{delta}"


def cmd_optimize(args: argparse.Namespace) -> int:
    from graphmill.optimization import optimize

    check_output_path(args.output, [args.model], args.force)
    graph = api.load(args.model)
    print_after = "all" if args.print_ir_after_all else args.print_ir_after
    report = optimize(
        graph, args.pipeline, schedule_file=args.schedule, check_numerics=args.check_numerics, rtol=args.rtol,
        atol=args.atol, seed=args.seed, verify_each=args.verify_each, time_passes=args.time_passes,
        print_ir_after=print_after, print_ir_diff=args.print_ir_diff, allow=["exact", "float-reassociating"]
        + list(args.allow or []), reproducer_dir=args.reproducer_dir, compare=not args.no_compare,
        explain_rule=args.explain_match)
    save_output(graph, args)
    data = report.to_dict()
    data.update({"input": args.model, "output": args.output})
    if args.json:
        _write_json(data, args.json)
    if args.json == "-":
        return 0
    b, a = report.before, report.after
    print(f"optimized {args.model} -> {args.output}")
    print(_summary_line("nodes", b["nodes"], a["nodes"]))
    print(_summary_line("params", b["params"], a["params"]))
    print(_summary_line("MACs", b["macs"], a["macs"]))
    if report.comparison is not None:
        c = report.comparison
        verdict = "within" if c["ok"] else "OUTSIDE"
        print(f"  outputs   max |diff| {c['max_abs']:.3g} under ONNX Runtime ({verdict} atol={c['atol']:g}, "
              f"rtol={c['rtol']:g}; seed {report.seed})")
    if report.numerics is not None:
        print(f"  numerics  checked after {report.numerics['checks']} changing pass(es): all within tolerance")
    if report.time_passes is not None:
        from graphmill.passes.instruments import TimePasses

        t = TimePasses()
        for r in report.time_passes:
            t.total[r["pass"]] = r["seconds"]
            t.count[r["pass"]] = r["runs"]
        print(t.table())
    for note in report.notes:
        print(f"  note: {note}")
    if report.explain:
        print(report.explain)
    if report.comparison is not None and not report.comparison["ok"]:
        print("graphmill optimize: error: the optimized model's outputs differ from the original's beyond "
              "tolerance", file=sys.stderr)
        return 1
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from graphmill.frontend import zoo

    if args.list:
        width = max(len(n) for n in zoo.MODELS)
        for name in sorted(zoo.MODELS):
            print(f"{name:<{width}}  {zoo.DESCRIPTIONS.get(name, '')}".rstrip())
        return 0
    if not args.name:
        raise UserInputError(f"graphmill zoo needs a model name; known: {', '.join(sorted(zoo.MODELS))}")
    name = zoo.resolve_name(args.name)
    mult = {k: zoo.check_positive(k, getattr(args, k)) for k in ("width", "depth", "resolution")
            if getattr(args, k) is not None}  # checked before anything is built or written
    if not args.output:
        raise UserInputError("graphmill zoo NAME needs -o OUT.onnx")
    graph = zoo.build(name, **mult)
    api.save(graph, args.output)
    print(f"wrote {args.output} ({name}, {len(graph)} nodes)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the embedded example model, save it, and inspect, run and round-trip it."""
    from graphmill.frontend import zoo

    if args.runs < 1:
        raise UserInputError("--runs must be at least 1")
    if args.model not in zoo.MODELS:
        raise UserInputError(f"unknown zoo model {args.model!r}; known: {', '.join(sorted(zoo.MODELS))}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        result = api.demo(args.out, model=args.model, runs=args.runs)
    else:  # nothing left behind when the user did not ask for the files
        with tempfile.TemporaryDirectory(prefix="graphmill-demo-") as tmp:
            result = api.demo(tmp, model=args.model, runs=args.runs)
    if args.json:
        _write_json(result, None)
        return 0
    b, a = result["before"], result["after"]
    print(f"== graphmill demo: {args.model} (seeded random weights, built from the paper's block table), "
          f"input {result['input_shape']}")
    if args.out:
        print(f"   files: {result['file']}, {result['optimized_file']}")
    print(f"   round trip load -> save -> load: proto equal: {result['roundtrip_proto_equal']}")
    print(f"   schedule: {result['schedule']}\n")
    print(f"  {'':<26}{'before':>16}{'after':>16}")
    print(f"  {'nodes':<26}{b['nodes']:>16,}{a['nodes']:>16,}")
    print(f"  {'parameters':<26}{b['params']:>16,}{a['params']:>16,}")
    print(f"  {'MACs':<26}{b['macs']:>16,}{a['macs']:>16,}")
    for label, key in (("ORT ms (its opts off)", "ort_disabled"), ("ORT ms (its opts on)", "ort_all")):
        lat = result["latency"][key]
        print(f"  {label:<26}{lat['before_ms']:>16.2f}{lat['after_ms']:>16.2f}")
    c = result["comparison"]
    print(f"  {'max |output diff|':<26}{'':>16}{c['max_abs']:>16.3g}   "
          f"({'within' if c['ok'] else 'OUTSIDE'} atol={c['atol']:g} + rtol={c['rtol']:g}*|ref|)")
    print(f"\n  ops after: " + ", ".join(f"{k} x{v}" for k, v in a["ops"].items()))
    print(f"  ONNX Runtime latency: median of {result['runs']} runs, 1 thread")
    return 0 if c["ok"] else 1


def cmd_scale(args: argparse.Namespace) -> int:
    """Compound-scale a model (EfficientNet's rule) and write the result."""
    from graphmill.passes.scaling import scale_graph

    check_output_path(args.output, [args.model], False)
    graph = api.load(args.model)
    report = scale_graph(graph, phi=args.phi, alpha=args.alpha, beta=args.beta, gamma=args.gamma,
                         divisor=args.divisor, seed=args.seed)  # validates before anything is written
    api.save(graph, args.output)
    report.update(input=args.model, output=args.output)
    if args.json:
        _write_json(report, None)
        return 0
    print(f"scaled {args.model} -> {args.output}: phi={args.phi:g}  depth x{report['depth']:.4g}  "
          f"width x{report['width']:.4g}  resolution x{report['resolution']:.4g}  "
          f"(input {report['input_size_before']} -> {report['input_size_after']})")
    for row in report["stages"]:
        print(f"  stage {row['stage']!s:<4} {row['kind']:<5} repeats {row['repeats_before']} -> {row['repeats_after']}"
              f"  channels {row['channels_before']} -> {row['channels_after']}")
    return 0


def cmd_scale_search(args: argparse.Namespace) -> int:
    """Grid search of compound-scaling coefficients (EfficientNet, latency-aware with a simulator config)."""
    from graphmill.search import scaling as S

    space = S.ScalingGrid(step=args.step, max_value=args.max_value, tolerance=args.tolerance)
    if args.cost == "sim" and not args.accel:
        raise UserInputError("--cost sim needs --accel A.toml (the accelerator to simulate on)")
    cost = S.SimLatencyCost(args.accel) if args.cost == "sim" else S.MacsCost()
    evaluator = S.StubEvaluator() if args.stub else S.TrainEvaluator(steps=args.steps, seed=args.seed)
    base = api.load(args.model) if args.model else S.default_base(args.seed)
    os.makedirs(args.out, exist_ok=True)
    checkpoint = args.checkpoint or os.path.join(args.out, "checkpoint.json")
    result = S.run_search(base, space=space, evaluator=evaluator, cost=cost,
                          objective=S.Objective(max_cost=args.max_cost), checkpoint=checkpoint, phi=args.phi,
                          seed=args.seed, limit=args.limit)
    results_path = os.path.join(args.out, "results.json")
    plot_path = os.path.join(args.out, "accuracy_vs_cost.png")
    _write_json(result.to_dict(), results_path)
    if result.candidates:
        S.plot(result, plot_path)
    if args.json:
        _write_json(result.to_dict(), None)
    else:
        b = result.best
        if b:
            print(f"best: alpha={b['alpha']:g} beta={b['beta']:g} gamma={b['gamma']:g}  "
                  f"accuracy {b['accuracy']:.3f}  {cost.name} {b['cost']:.4g}")
        print(f"{len(result.candidates)} candidate(s); results {results_path}, plot {plot_path}, "
              f"checkpoint {checkpoint}")
    if result.interrupted:
        print("interrupted: run the same command again to resume from the checkpoint", file=sys.stderr)
        return 130
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a model on an accelerator config, or a SCALE-Sim topology under a SCALE-Sim config."""
    if args.scalesim_topology or args.scalesim_config:
        if not (args.scalesim_topology and args.scalesim_config) or args.model or args.accel:
            raise UserInputError("use either MODEL.onnx --accel A.toml, or --scalesim-topology T.csv "
                                 "--scalesim-config C.cfg")
        report = api.simulate_scalesim(args.scalesim_topology, args.scalesim_config)
    else:
        if not args.model or not args.accel:
            raise UserInputError("graphmill simulate needs MODEL.onnx --accel A.toml (or --scalesim-topology "
                                 "T.csv --scalesim-config C.cfg)")
        from graphmill.backends.simulator import load_accel

        accel = load_accel(args.accel)  # validate the config before reading the model
        report = api.simulate(api.load(args.model), accel)
    if args.plot:
        report.plot(args.plot)
    if args.json:
        _write_json(report.to_dict(), None)
    else:
        print(report.table(), end="")
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


# -- entry point ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphmill", description="A compiler-style graph optimizer for neural networks.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv for debug)")
    from graphmill import __version__

    parser.add_argument("--version", action="version", version=f"graphmill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("inspect", help="node count, op histogram, inputs/outputs, parameters and MACs of a model")
    p.add_argument("model", help="an ONNX model file")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: nodes, ops, params, macs, flops, inputs, outputs, opsets, symbols, problems, ...)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dimension for the cost figures (default 1 each, e.g. per sample)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("roundtrip", help="import a model into the IR and export it again (lossless)")
    p.add_argument("model", help="an ONNX model file")
    p.add_argument("-o", "--output", required=True, help="where to write the exported model")
    p.add_argument("--force", action="store_true", help="allow -o to overwrite the input model or its weights")
    p.add_argument("--external-data", metavar="NAME",
                   help="write weights to NAME next to the output (default: only when the input had external data)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_roundtrip)

    p = sub.add_parser("optimize", help="run a pass schedule over a model (default: the embedded schedule)")
    p.add_argument("model", help="an ONNX model file (never overwritten unless --force)")
    p.add_argument("-o", "--output", required=True, help="where to write the optimized model")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-s", "--schedule", metavar="FILE.mill", help="schedule file (FILE.mill:NAME picks a schedule), or a built-in schedule: default, ort "
                   "(adds ONNX Runtime's com.microsoft fusions), cleanup")
    g.add_argument("-p", "--pipeline", metavar="INLINE", help="inline schedule, e.g. 'fold-constants,fixpoint{simplify,cse,dce}'")
    p.add_argument("--check-numerics", action="store_true",
                   help="after each changing pass, compare ONNX Runtime outputs with the original's; stop at the first pass that breaks them")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance for numerics (default 1e-4)")
    p.add_argument("--atol", type=float, default=1e-5, help="absolute tolerance for numerics (default 1e-5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--verify-each", action="store_true", help="verify the IR and the model interface after every pass")
    p.add_argument("--time-passes", action="store_true", help="print a table of time per pass")
    p.add_argument("--print-ir-after", metavar="PASS", help="print the IR after this pass ('all' for every pass)")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass that changed it")
    p.add_argument("--print-ir-diff", action="store_true", help="print a diff of the IR after every pass that changed it")
    p.add_argument("--allow", action="append", choices=["approximate"], help="also run rules of this exactness")
    p.add_argument("--explain-match", metavar="RULE", help="after optimizing, say why RULE does not match (closest partial match)")
    p.add_argument("--reproducer-dir", metavar="DIR", help="where to write a reproducer when a pass fails (default: a temp folder)")
    p.add_argument("--no-compare", action="store_true", help="skip the final ONNX Runtime comparison with the original")
    p.add_argument("--json", metavar="REPORT", help="write the report as JSON to REPORT ('-' for stdout only)")
    p.add_argument("--force", action="store_true", help="allow -o to overwrite the input model or its weights")
    p.add_argument("--external-data", metavar="NAME",
                   help="write weights to NAME next to the output (default: only when the input had external data)")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("scale-search", help="search compound-scaling coefficients alpha, beta, gamma (grid, "
                                            "alpha*beta^2*gamma^2 ~ 2) by short training runs and a cost")
    p.add_argument("model", nargs="?", help="base model (default: a small ResNet-18 for 16x16 digits)")
    p.add_argument("--out", default="scale-search", help="folder for results.json, the plot and the checkpoint")
    p.add_argument("--checkpoint", help="checkpoint file (default OUT/checkpoint.json); a rerun resumes from it")
    p.add_argument("--cost", choices=["macs", "sim"], default="macs", help="cost: MACs or simulated cycles")
    p.add_argument("--accel", help="accelerator TOML for --cost sim")
    p.add_argument("--max-cost", type=float, help="cost budget (candidates above it rank last)")
    p.add_argument("--phi", type=float, default=1.0, help="compound coefficient for the search (default 1)")
    p.add_argument("--step", type=float, default=0.1, help="grid step (default 0.1)")
    p.add_argument("--max-value", type=float, default=2.0, help="largest alpha/beta/gamma (default 2)")
    p.add_argument("--tolerance", type=float, default=0.1, help="|alpha*beta^2*gamma^2 - 2| allowed (default 0.1)")
    p.add_argument("--steps", type=int, default=30, help="training steps per candidate (default 30)")
    p.add_argument("--limit", type=int, help="evaluate at most this many candidates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stub", action="store_true", help="use the stub evaluator (NOT an accuracy; for trying the tool)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=cmd_scale_search)

    p = sub.add_parser("passes", help="list the passes with their documentation, options and rules")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_passes)

    p = sub.add_parser("zoo", help="write a reference architecture as ONNX (random weights)")
    p.add_argument("name", nargs="?", help="model name (see --list)")
    p.add_argument("-o", "--output", help="where to write the model")
    p.add_argument("--list", action="store_true", help="list the models")
    p.add_argument("--width", metavar="W", help="channel (or head) multiplier, > 0 (default 1)")
    p.add_argument("--depth", metavar="D", help="repeats multiplier, > 0: blocks per stage become ceil(D * n)")
    p.add_argument("--resolution", metavar="R", help="input size: a multiplier below 16, else pixels (default 1)")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("demo", help="build the embedded example model and inspect, run and round-trip it")
    p.add_argument("--model", default="resnet18", help="zoo model to use (default: resnet18)")
    p.add_argument("--out", help="folder for the model file (default: a new temporary folder)")
    p.add_argument("--runs", type=int, default=10, help="ONNX Runtime timing runs")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("scale", help="compound scaling (EfficientNet): depth alpha^phi, width beta^phi, resolution gamma^phi")
    p.add_argument("model", help="an ONNX model file (never overwritten)")
    p.add_argument("--phi", type=float, required=True, help="compound coefficient, >= 0")
    p.add_argument("--alpha", type=float, default=1.2, help="depth base (default 1.2)")
    p.add_argument("--beta", type=float, default=1.1, help="width base (default 1.1)")
    p.add_argument("--gamma", type=float, default=1.15, help="resolution base (default 1.15)")
    p.add_argument("--divisor", type=int, default=8, help="channels are rounded to multiples of this (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of new weights (default 0)")
    p.add_argument("-o", "--output", required=True, help="where to write the scaled model")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: depth, width, resolution, input_size_before/after, "
                        "stages: [{stage, kind, repeats_before, repeats_after, channels_before, channels_after}])")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("simulate", help="cycle-level simulation on a systolic-array accelerator (per-layer table)")
    p.add_argument("model", nargs="?", help="an ONNX model file")
    p.add_argument("--accel", help="accelerator config (TOML; see examples/accelerators/)")
    p.add_argument("--scalesim-topology", metavar="T.csv", help="a SCALE-Sim topology CSV (instead of a model)")
    p.add_argument("--scalesim-config", metavar="C.cfg", help="a SCALE-Sim config (with --scalesim-topology)")
    p.add_argument("--plot", metavar="OUT.png", help="write per-layer cycles and a roofline as PNG")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: total_cycles, layers: [{name, op, compute_cycles, stall_cycles, "
                        "total_cycles, utilization, dram_read_bytes, dram_write_bytes}], ...)")
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2), format="%(name)s: %(message)s")
    try:
        return args.func(args)
    except GraphmillError as e:
        print(f"graphmill {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"graphmill {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `graphmill inspect m.onnx | head`
        return 0
    except OSError as e:  # a file-system refusal we did not anticipate: still one line, still exit 2
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"graphmill {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
