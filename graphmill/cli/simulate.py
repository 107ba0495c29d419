"""``graphmill simulate``: cycle-level simulation of a model (or a SCALE-Sim topology) on an accelerator."""

from __future__ import annotations

import argparse
import sys
import warnings

from graphmill import api
from graphmill.cli.common import emit_json, parse_dims
from graphmill.errors import UserInputError
from graphmill.util.errors import naming_file
from graphmill.util.files import check_output_paths
from graphmill.util.plots import check_png_path
from graphmill.util.text import one_line


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("simulate", help="cycle-level simulation on a systolic-array accelerator (per-layer table)")
    p.add_argument("model", nargs="?", help="an ONNX model file")
    p.add_argument("--accel", help="accelerator config (TOML; see examples/accelerators/); required with a model")
    p.add_argument("--scalesim-topology", metavar="T.csv", help="a SCALE-Sim topology CSV (instead of a model)")
    p.add_argument("--scalesim-config", metavar="C.cfg", help="a SCALE-Sim config (with --scalesim-topology)")
    p.add_argument("--scalesim-compat", action="store_true",
                   help="use SCALE-Sim 3.0.0's memory arithmetic (its double-counted prefetch stall and write-buffer "
                        "accounting) to match its cycle counts exactly; default: graphmill's corrected model")
    p.add_argument("--expert-chips", metavar="N[,N...]",
                   help="MoE graphs: simulate expert parallelism on these chip counts (default: the accelerator's "
                        "chips, at least 2), against the layer replicated on one chip")
    p.add_argument("--dim", action="append", metavar="NAME=SIZE",
                   help="size of a symbolic dimension (default 1 each, which the report notes)")
    p.add_argument("--plot", metavar="OUT.png", help="write per-layer cycles and a roofline as PNG")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys: model, bandwidth_mode, total_cycles, partial, uncosted: [{name, op, "
                        "reason}], notes: [str], layers: [{name, op, compute_cycles, stall_cycles, total_cycles, "
                        "utilization, dram_read_bytes, dram_write_bytes, dram_bw_needed}], ...)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.plot:  # before any work: --plot over the model, the accelerator or a SCALE-Sim file replaced it
        check_output_paths({"MODEL": args.model, "--accel": args.accel, "--scalesim-topology": args.scalesim_topology,
                            "--scalesim-config": args.scalesim_config}, {"--plot": args.plot})
        check_png_path(args.plot)
    if args.accel and args.accel.lower().endswith(".cfg") and not args.scalesim_config:
        # a SCALE-Sim config given as graphmill's TOML: "not valid TOML" alone left the user there (a new user)
        raise UserInputError(f"--accel {args.accel}: a SCALE-Sim .cfg goes to --scalesim-config C.cfg (with "
                             "--scalesim-topology T.csv); --accel takes graphmill's accelerator TOML")
    if args.scalesim_topology or args.scalesim_config:
        if args.model or args.accel:
            raise UserInputError("use either MODEL.onnx --accel A.toml, or --scalesim-topology T.csv "
                                 "--scalesim-config C.cfg")
        if not (args.scalesim_topology and args.scalesim_config):
            missing = "--scalesim-config C.cfg" if args.scalesim_topology else "--scalesim-topology T.csv"
            raise UserInputError(f"a SCALE-Sim run needs --scalesim-topology T.csv and --scalesim-config C.cfg: "
                                 f"{missing} is missing")
        for flag, given in (("--dim", args.dim), ("--expert-chips", args.expert_chips is not None)):
            if given:  # they were refused with the line above, which blamed what the user had right
                raise UserInputError(f"{flag} applies to an ONNX model (MODEL.onnx --accel A.toml), not to a "
                                     "SCALE-Sim topology")
        report = api.simulate_scalesim(args.scalesim_topology, args.scalesim_config,
                                       scalesim_compat=args.scalesim_compat)
    else:
        if args.model and not args.accel:
            raise UserInputError(f"{args.model}: --accel A.toml is required: the accelerator to simulate on (e.g. "
                                 "examples/accelerators/edge.toml)")
        if not args.model or not args.accel:
            raise UserInputError("graphmill simulate needs MODEL.onnx --accel A.toml (or --scalesim-topology "
                                 "T.csv --scalesim-config C.cfg)")
        accel = api.load_accel(args.accel)  # validate the config before reading the model
        graph = api.load(args.model)
        with warnings.catch_warnings(), naming_file(args.model):  # said once below, as one line; a refusal of
            warnings.filterwarnings("ignore", message="simulator: ")  # the model's contents names it (as inspect)
            report = api.simulate(graph, accel, scalesim_compat=args.scalesim_compat, dims=parse_dims(args.dim))
        if report.partial:
            # one line, whatever the model's names hold (other control characters: cli/common.escaped_controls)
            names = ", ".join(f"{one_line(u['name'])} ({one_line(u['op'])})" for u in report.uncosted)
            print(f"graphmill simulate: warning: the totals are partial: {len(report.uncosted)} node(s) not costed: "
                  f"{names}", file=sys.stderr)
    replay = api.replay_placement(graph) if not (args.scalesim_topology or args.scalesim_config) else None
    moe = [] if (args.scalesim_topology or args.scalesim_config) else \
        api.simulate_moe(graph, accel, chips=_chip_list(args.expert_chips))  # per-expert load of MoE layers
    if args.expert_chips is not None and not moe:
        print("graphmill simulate: warning: --expert-chips: the model has no mixture-of-experts layer",
              file=sys.stderr)
    if args.plot:
        report.plot(args.plot)
    if args.json:
        d = report.to_dict() if replay is None else {**report.to_dict(), "placement_replay": replay}
        emit_json({**d, "moe": moe} if moe else d)
    else:
        print(report.table(), end="")
        print(api.moe_table(moe), end="")
        if replay is not None:  # a model saved by `graphmill place`: its placement on its devices
            m = replay["makespan"]  # 20.5 printed as "20" (half to even; an outside check): exact where not whole
            step = f"{m:,.0f}" if float(m).is_integer() else f"{m:,.2f}"
            print(f"placement ({replay['method']}) replayed on {len(replay['devices'])} devices: step time "
                  f"{step} {replay['units']}")
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


def _chip_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        chips = [int(t, 10) for t in text.split(",")]
    except ValueError:
        chips = []
    if not chips or any(c < 1 for c in chips):
        raise UserInputError(f"--expert-chips {text!r}: give chip counts >= 1, comma-separated (e.g. 4,8)")
    return chips
