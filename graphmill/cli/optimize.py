"""``graphmill optimize``: run a pass schedule over a model, check it against ONNX Runtime, report."""

from __future__ import annotations

import argparse
import os
import sys

from graphmill import api
from graphmill.cli.common import (add_output_args, check_output_path, check_outputs_against_weights, emit_json,
                                  model_output_file, parse_dims, report_file, save_output)
from graphmill.util.files import check_output_paths, check_target
from graphmill.util.limits import check_seed


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("optimize", help="run a pass schedule over a model (default: the embedded schedule)")
    p.add_argument("model", help="an ONNX model file (never overwritten unless --force)")
    p.add_argument("-o", "--output", type=model_output_file, required=True, help="where to write the optimized model")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-s", "--schedule", metavar="FILE.mill",
                   help="schedule file (FILE.mill:NAME picks a schedule), or a built-in schedule: default, ort "
                        "(adds ONNX Runtime's com.microsoft fusions), cleanup")
    g.add_argument("-p", "--pipeline", metavar="INLINE",
                   help="inline schedule, e.g. 'fold-constants,fixpoint{simplify,cse,dce}'")
    p.add_argument("--load-passes", metavar="FILE.py", action="append",
                   help="run this Python file of your own passes and rewrite rules first (registered with "
                        "@register_pass), so -p/-s/--explain-match can name them; repeatable")
    p.add_argument("--check-numerics", action="store_true",
                   help="after each changing pass, compare ONNX Runtime outputs with the original's; stop at the "
                        "first pass that breaks them")
    p.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance for numerics (default 1e-4)")
    p.add_argument("--atol", type=float, default=1e-5,
                   help="absolute tolerance for numerics (default 1e-5), in units of each output's largest "
                        "magnitude when that is above 1")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dimension for the random inputs and the figures (default 1 each)")
    p.add_argument("--verify-each", action="store_true",
                   help="verify the IR, the model interface (output names, types, symbolic dims) and the op "
                        "schemas' typing after every pass")
    p.add_argument("--time-passes", action="store_true", help="print a table of time per pass")
    p.add_argument("--print-ir-after", metavar="PASS",
                   help="print the IR after this pass ('all': as --print-ir-after-all)")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass that changed it")
    p.add_argument("--print-ir-diff", action="store_true",
                   help="print a diff of the IR after every pass that changed it")
    p.add_argument("--allow", action="append", choices=["approximate"], help="also run rules of this exactness")
    p.add_argument("--explain-match", metavar="RULE",
                   help="after optimizing, say why RULE does not match (closest partial match)")
    p.add_argument("--reproducer-dir", metavar="DIR",
                   help="where to write a reproducer when a pass fails (default: a temp folder)")
    p.add_argument("--no-compare", action="store_true", help="skip the final ONNX Runtime comparison with the original")
    p.add_argument("--json", type=report_file, metavar="REPORT",
                   help="write the report as JSON to REPORT ('-' for stdout only)")
    dev = p.add_argument_group("devices (for the place and learned-* passes, as graphmill place)")
    dev.add_argument("--devices", type=int, metavar="N", help="N identical chips (of --accel, or the built-in one)")
    dev.add_argument("--devices-file", metavar="D.toml", help="heterogeneous devices and links (README)")
    dev.add_argument("--accel", metavar="A.toml", help="accelerator config of the chips (alone: its system.chips)")
    dev.add_argument("--memory", type=float, metavar="GB", help="memory of every device (default: the file's, or 16)")
    dev.add_argument("--cost", default="roofline", choices=["roofline", "simulator"],
                     help="op costs (default roofline)")
    add_output_args(p)
    p.set_defaults(func=run)
    return p


def summary_line(label: str, before: float, after: float, fmt: str = "{:,}") -> str:
    delta = "" if before == after else f"  ({(after - before) / before * 100:+.1f}%)" if before else ""
    return f"  {label:<10}{fmt.format(before):>18} -> {fmt.format(after):<18}{delta}"


def run(args: argparse.Namespace) -> int:
    api.check_tolerances(args.rtol, args.atol)
    check_seed(args.seed)
    for path in (args.output, args.json):  # every output checked before any work (nothing written on a refusal)
        if path and path != "-":
            check_target(path)
    check_output_path(args.output, [args.model], args.force)  # --force lets -o replace the input
    check_output_paths({"MODEL": args.model}, {"--json": args.json})  # never a report or a plot
    schedule_file = args.schedule.rsplit(":", 1)[0] if args.schedule and not os.path.exists(args.schedule) \
        else args.schedule  # FILE.mill:NAME
    check_output_paths({"-s": schedule_file, "--accel": args.accel, "--devices-file": args.devices_file,
                        **{f"--load-passes {p}": p for p in args.load_passes or []}},
                       {"-o": args.output, "--json": args.json})
    for plugin in args.load_passes or []:
        api.load_passes(plugin)
    # after the plugins (the schedule may name their passes): the files the schedule includes are inputs too
    included = {f"-s {args.schedule} includes {os.path.relpath(f)}": f for f in
                (api.schedule_files(args.schedule)[1:] if args.schedule else ())}
    check_output_paths(included, {"-o": args.output, "--json": args.json})
    check_output_paths(api.schedule_policy_files(args.pipeline, args.schedule),
                       {"-o": args.output, "--json": args.json})
    if args.reproducer_dir is not None:  # api.optimize checks the schedule's files again, from the schedule itself
        api.check_reproducer_dir(args.reproducer_dir, {"MODEL": args.model, "-s": schedule_file, **included,
                                                       **{f"--load-passes {p}": p for p in args.load_passes or []}})
    graph = api.load(args.model)
    check_outputs_against_weights(graph, args, {"--json": args.json},
                                  {"-s": schedule_file, "--accel": args.accel, "--devices-file": args.devices_file,
                                   **{f"--load-passes {p}": p for p in args.load_passes or []}, **included,
                                   **api.schedule_policy_files(args.pipeline, args.schedule)})
    print_after = "all" if args.print_ir_after_all else args.print_ir_after
    report = api.optimize(
        graph, args.pipeline, schedule_file=args.schedule, check_numerics=args.check_numerics, rtol=args.rtol,
        atol=args.atol, seed=args.seed, verify_each=args.verify_each, time_passes=args.time_passes,
        print_ir_after=print_after, print_ir_diff=args.print_ir_diff, allow=["exact", "float-reassociating"]
        + list(args.allow or []), reproducer_dir=args.reproducer_dir, compare=not args.no_compare,
        explain_rule=args.explain_match, dims=parse_dims(args.dim), load_passes=args.load_passes or (),
        devices=args.devices, devices_file=args.devices_file, accel=args.accel, memory_gb=args.memory,
        cost=args.cost, source=args.model)
    save_output(graph, args)
    data = report.to_dict()
    data.update({"input": args.model, "output": args.output})
    if args.json:
        emit_json(data, args.json)
    if args.json == "-":  # stdout is the JSON alone; the table asked for goes to stderr (it was printed nowhere)
        if report.time_passes is not None:
            print(api.pass_time_table(report.time_passes), file=sys.stderr)
        return 0
    b, a = report.before, report.after
    print(f"optimized {args.model} -> {args.output}")
    print(summary_line("nodes", b["nodes"], a["nodes"]))
    print(summary_line("params", b["params"], a["params"]))
    print(summary_line("MACs", b["macs"], a["macs"]))
    if report.comparison is not None:
        c = report.comparison
        verdict = "within" if c["ok"] else "OUTSIDE"
        # a nan against an inf, a changed shape: not in the largest difference, which read as "0 ... OUTSIDE" (a
        # fuzzer); the notes below say what differs
        noted = any(not o["ok"] and o.get("note") for o in c["outputs"])
        print(f"  outputs   max |diff| {c['max_abs']:.3g}{' over the values compared' if noted else ''} under ONNX "
              f"Runtime ({verdict} {c['tolerance']}; seed {report.seed})")
        for o in c["outputs"]:  # an inf that is a changed shape or a missing output said so nowhere (a fuzzer)
            if not o["ok"] and o.get("note"):
                print(f"            output {o['name']!r}: {o['note']}")
    if report.numerics is not None:
        print(f"  numerics  checked after {report.numerics['checks']} changing pass(es): all within tolerance")
    if report.time_passes is not None:
        print(api.pass_time_table(report.time_passes))
    for note in report.notes:
        print(f"  note: {note}")
    if report.explain:
        print(report.explain)
    if report.comparison is not None and not report.comparison["ok"]:
        print("graphmill optimize: error: the optimized model's outputs differ from the original's beyond "
              "tolerance", file=sys.stderr)
        return 1
    return 0
