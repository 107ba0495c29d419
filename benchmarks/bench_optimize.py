"""Graph optimization: graphmill's default schedule against onnxsim, onnxslim, onnxoptimizer, onnxscript and ORT.

For each model and each tool this measures:

  nodes     node count of the result (top-level graph; Constant nodes count)
  opt s     optimization wall time, file to file (the tool's own load, optimize
            and save; imports excluded), median of ``--opt-repeat`` calls in a
            fresh process (default 1: one cold call, as a command-line user has)
  lat-off   ONNX Runtime latency of the result with ORT's graph optimizations
            disabled (ORT_DISABLE_ALL): the graph itself is measured
  lat-on    the same with ORT's optimizations enabled (ORT_ENABLE_ALL, the
            default users run with)
  diff      max |out - ref| over every output, and the same divided by max |ref|
            of that output (rel), where ref is the original model's output on
            the same seeded random inputs (both with ORT_DISABLE_ALL)

Latency is the median of ``--repeat`` rounds (default 20) after one warm-up, on
one thread (intra_op_num_threads=1, inter_op_num_threads=1, sequential
execution, CPUExecutionProvider). All tools' results of one model are timed in
one fresh Python process, interleaved: each round runs every session once,
starting at a different session each round. A latency ratio is the median of
the per-round ratios (paired, so a slow spell of the machine hits both sides);
the A/A column is the same ratio for the original against a second session of
itself: how far from 1.00 a ratio moves when nothing differs.

The tools (peers are PyPI packages; see the README's "Optimization benchmark"):

  original        the model as exported (the reference; latency baseline)
  graphmill       ``graphmill.load``; ``graphmill.optimize(g)`` (the
                  embedded default schedule); ``graphmill.save``
  graphmill+ms    the embedded ``ort`` schedule: the default schedule then
                  ``fuse-activation{emit=fused-conv}``, ``fuse-ort-contrib`` and
                  ``dce`` (com.microsoft FusedConv, QuickGelu, Gelu, BiasGelu,
                  SkipLayerNormalization, FusedMatMul, FusedGemm); a graphmill
                  without that schedule gets the default schedule then
                  ``fuse-activation{emit=fused-conv}``; n/a when ``graphmill
                  passes`` lacks that option too. Compared with ort-extended.
  onnxsim         ``onnxsim.simplify(model)`` (defaults; check_n=0)
  onnxslim        ``onnxslim.slim(model)``
  onnxoptimizer   ``onnxoptimizer.optimize(model)`` (its default fuse-and-elimination passes)
  onnxscript      ``onnxscript.optimizer.optimize(model)``
  ort-extended    an ``onnxruntime.InferenceSession`` with ORT_ENABLE_EXTENDED and
                  ``optimized_model_filepath`` (ORT's offline mode; the result
                  holds com.microsoft ops)

Models: ``resnet50``, ``mobilenet_v2``, ``efficientnet_b0``, ``bert_base`` (a
BERT-base-like encoder, seq 128), ``encoder4`` (a 4-layer
``nn.TransformerEncoder``) and ``vit_b16``, written in torch.nn in
``benchmarks/torch_models.py`` with seeded random weights and exported at run
time into a temporary folder with the legacy exporter (``dynamo=False``, opset
17); and every light model of onnx's test data
(``onnx/backend/test/data/light``), named ``light_*``.

Ratios are graphmill over the best peer (lowest value among onnxsim, onnxslim,
onnxoptimizer, onnxscript, the standard-op peers; graphmill+ms nodes over
ort-extended's, graphmill+ms latency over the best of all five peers): below
1.0 graphmill wins. A tool that fails or crashes
on a model is recorded in its cell (ERR) and listed under the tables; it does
not stop the run.

Run (everything: about 11 minutes on an otherwise idle 2-core machine, 18 under load average 3-6; `--models` for a subset; peers in a scratch
venv, e.g. ``pip install -e '.[bench]'``):

    python benchmarks/bench_optimize.py
    python benchmarks/bench_optimize.py --models resnet50,bert_base --repeat 5 --json opt.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))


def import_graphmill():
    """graphmill is imported only by the workers that run it, so a peer's or the export's never depend on it."""
    try:
        import graphmill
    except ImportError:  # run from a checkout without installing it
        sys.path.insert(0, os.path.dirname(HERE))
        import graphmill
    return graphmill

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
TORCH_MODELS = ("resnet50", "mobilenet_v2", "efficientnet_b0", "bert_base", "encoder4", "vit_b16")
SEED = 0
TOOLS = ("graphmill", "graphmill+ms", "onnxsim", "onnxslim", "onnxoptimizer", "onnxscript", "ort-extended")
STD_PEERS = ("onnxsim", "onnxslim", "onnxoptimizer", "onnxscript")  # standard ONNX ops only
ALL_PEERS = STD_PEERS + ("ort-extended",)
FUSED_STEP = "fuse-activation{emit=fused-conv},fuse-ort-contrib,dce"  # what the embedded `ort` schedule adds
FUSED_CONV_STEP = "fuse-activation{emit=fused-conv}"  # all a graphmill without the `ort` schedule can add
WORKER_TIMEOUT_S = 900


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the models ---------------------------------------------------------------

def light_models() -> dict[str, str]:
    if not os.path.isdir(LIGHT_DIR):
        sys.exit(f"bench_optimize: onnx's light test models are not at {LIGHT_DIR}")
    return {f[:-len(".onnx")]: os.path.join(LIGHT_DIR, f) for f in sorted(os.listdir(LIGHT_DIR))
            if f.startswith("light_") and f.endswith(".onnx")}


def write_light_inputs(path: str, npz: str, seed: int = SEED) -> None:
    """Seeded random data for every graph input that is not an initializer."""
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[vi.name] = rng.integers(0, 10, size=shape).astype(dtype)
    np.savez(npz, **feeds)


def export_torch_model(name: str, path: str, npz: str) -> None:
    """(worker) Export a torch model and write its seeded example inputs."""
    sys.path.insert(0, HERE)
    import torch
    import torch_models

    torch.set_num_threads(1)
    torch_models.export(name, path)
    _, make_input, input_names, _, _ = torch_models.MODELS[name]
    args = make_input(torch.Generator().manual_seed(torch_models.SEED + 2))  # the inputs build() traces with
    np.savez(npz, **{n: a.numpy() for n, a in zip(input_names, args)})


# -- the tools ----------------------------------------------------------------

def fused_schedule() -> str | None:
    """The embedded ``ort`` schedule (default + com.microsoft contrib-op fusions) as inline text; for a
    graphmill without it, the default schedule plus FusedConv emission; None when the passes lack that too."""
    import_graphmill()
    from graphmill.passes.base import registered_passes

    cls = registered_passes().get("fuse-activation")
    if cls is None:
        return None
    emit = {o.name: o for o in cls.options}.get("emit")
    if emit is None or (emit.choices is not None and "fused-conv" not in emit.choices):
        return None
    from graphmill.errors import GraphmillError
    from graphmill.passes.builtin_schedules import default_schedule

    try:
        from graphmill.passes.builtin_schedules import builtin_schedule

        return builtin_schedule("ort").to_inline()
    except (ImportError, GraphmillError):  # a graphmill from before the ort schedule
        pass
    return default_schedule().to_inline() + "," + FUSED_CONV_STEP


def _gm(schedule: str | None) -> Callable[[str, str], None]:
    graphmill = import_graphmill()
    from graphmill.optimization import optimize

    def run(src: str, dst: str) -> None:
        g = graphmill.load(src)
        if schedule is None:
            optimize(g)
        else:
            optimize(g, schedule)
        graphmill.save(g, dst)
    return run


def _proto_tool(transform: Callable[[onnx.ModelProto], onnx.ModelProto]) -> Callable[[str, str], None]:
    def run(src: str, dst: str) -> None:
        out = transform(onnx.load(src))
        onnx.save(out, dst)
    return run


def make_tool(tool: str) -> Callable[[str, str], None]:
    """(worker) Import the tool (outside the timed region) and return file -> file."""
    if tool == "graphmill":
        return _gm(None)
    if tool == "graphmill+ms":
        sched = fused_schedule()
        if sched is None:
            raise NotImplementedError(f"n/a: graphmill has no {FUSED_CONV_STEP} option")
        return _gm(sched)
    if tool == "onnxsim":
        import onnxsim

        def sim(m):
            out, ok = onnxsim.simplify(m)
            if not ok:
                raise RuntimeError("onnxsim's own check failed")
            return out
        return _proto_tool(sim)
    if tool == "onnxslim":
        import onnxslim
        return _proto_tool(onnxslim.slim)
    if tool == "onnxoptimizer":
        import onnxoptimizer
        return _proto_tool(onnxoptimizer.optimize)
    if tool == "onnxscript":
        import onnxscript.optimizer
        return _proto_tool(onnxscript.optimizer.optimize)
    if tool == "ort-extended":
        import onnxruntime as ort

        def ort_offline(src: str, dst: str) -> None:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = dst
            ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
        return ort_offline
    raise ValueError(tool)


def worker_optimize(tool: str, src: str, dst: str, repeat: int) -> dict:
    run = make_tool(tool)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(src, dst)
        times.append(time.perf_counter() - t0)
    return {"opt_s": round(statistics.median(times), 4), "opt_s_all": [round(t, 4) for t in times]}


def _compare(want: dict, outs: dict) -> tuple[float, float]:
    """Max abs and max relative (|diff| / max |ref| per output) difference from the original's outputs."""
    missing = sorted(set(want) - set(outs))
    if missing:
        raise RuntimeError(f"output(s) {', '.join(missing)} missing from the result")
    max_abs = max_rel = 0.0
    for n, w in want.items():
        g = outs[n]
        if g.shape != w.shape:
            raise RuntimeError(f"output {n}: shape {list(g.shape)}, original {list(w.shape)}")
        d = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if w.size else 0.0
        max_abs = max(max_abs, d)
        if not np.issubdtype(w.dtype, np.floating):
            max_rel = max(max_rel, d)
            continue
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        max_rel = max(max_rel, d / scale if scale > 0 else (0.0 if d == 0 else float("inf")))
    return max_abs, max_rel


def _input_defaults(path: str) -> dict[str, np.ndarray]:
    """The original's graph inputs that have an initializer (IR < 4 lists every initializer as an input).

    ORT's offline optimizer drops such initializers but keeps the inputs; fed with the original's values,
    its result computes what the original does, so it can still be timed (now as a real input, which
    ORT cannot constant-fold: that is the result it saved).
    """
    from onnx import numpy_helper

    m = onnx.load(path, load_external_data=False)
    names = {i.name for i in m.graph.input}
    return {t.name: numpy_helper.to_array(t) for t in m.graph.initializer
            if t.name in names and t.data_location != onnx.TensorProto.EXTERNAL}


def _session(path: str, level: Any, feeds_all: dict, defaults: dict) -> tuple[Any, dict]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = level
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    extra = [i.name for i in sess.get_inputs() if i.name not in feeds_all and i.name not in defaults]
    if extra:
        raise RuntimeError(f"the result needs input(s) the original does not have: {', '.join(extra[:3])}"
                           + (f" and {len(extra) - 3} more" if len(extra) > 3 else ""))
    return sess, {i.name: feeds_all[i.name] if i.name in feeds_all else defaults[i.name] for i in sess.get_inputs()}


def worker_latency(listing: str, inputs: str, repeat: int) -> dict:
    """Every tool's result of one model timed in one process, in interleaved rounds.

    ``listing`` is a JSON list of [label, path], the original first. Each round runs every session once,
    starting at a different one each round, so drift in the machine's speed (other load, clock, cache)
    falls on all tools alike; the per-round times come back, so ratios can be taken round by round.
    The original is loaded twice (labels ``original`` and ``original:aa``): their ratio is the A/A
    control, the noise floor of the comparison. Outputs (ORT optimizations off) are compared with the
    original's.
    """
    import onnxruntime as ort

    with open(listing) as f:
        entries = [tuple(e) for e in json.load(f)]
    entries.insert(1, ("original:aa", entries[0][1]))
    feeds_all = dict(np.load(inputs))
    defaults = _input_defaults(entries[0][1])
    res: dict[str, dict[str, Any]] = {label: {} for label, _ in entries}
    ref: dict | None = None
    for key, level in (("off", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
                       ("on", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)):
        live = []
        for label, path in entries:
            if "error" in res[label]:
                continue
            try:
                sess, feeds = _session(path, level, feeds_all, defaults)
                if set(feeds) - set(feeds_all):
                    res[label]["fed_defaults"] = len(set(feeds) - set(feeds_all))
                outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))  # warm-up
            except Exception as e:
                res[label]["error"] = "result does not run: " + _short_error(e)
                continue
            if key == "off":
                if label == "original":
                    ref = outs
                    res[label]["max_abs"] = res[label]["max_rel"] = 0.0
                elif ref is not None:
                    try:
                        res[label]["max_abs"], res[label]["max_rel"] = _compare(ref, outs)
                    except RuntimeError as e:
                        res[label]["error"] = "result does not run: " + _short_error(e)
                        continue
            live.append((label, sess, feeds))
            res[label][f"lat_{key}_rounds_ms"] = []
        for r in range(repeat):
            for i in range(len(live)):
                label, sess, feeds = live[(i + r) % len(live)]
                t0 = time.perf_counter()
                sess.run(None, feeds)
                res[label][f"lat_{key}_rounds_ms"].append(round((time.perf_counter() - t0) * 1e3, 4))
        for label, _, _ in live:
            res[label][f"lat_{key}_ms"] = round(statistics.median(res[label][f"lat_{key}_rounds_ms"]), 3)
        del live
    return res


def run_worker(*args: str) -> dict:
    """One measurement in a fresh Python process; its JSON answer comes back through a file."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        answer = f.name
    try:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", answer, *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {WORKER_TIMEOUT_S} s") from None
        if p.returncode != 0:
            lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
            if p.returncode < 0:
                raise RuntimeError(f"crashed (signal {-p.returncode})" + (f": {lines[-1]}" if lines else ""))
            raise RuntimeError(lines[-1] if lines else f"worker exited with status {p.returncode}")
        with open(answer) as f:
            return json.load(f)
    finally:
        os.unlink(answer)


def _short_error(e: Exception) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:300]


# -- one model ----------------------------------------------------------------

def graph_stats(path: str) -> dict:
    m = onnx.load(path, load_external_data=False)
    ops = collections.Counter((n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}")
                              for n in m.graph.node)
    return {"nodes": len(m.graph.node), "ops": dict(sorted(ops.items())), "size_mb": round(os.path.getsize(path) / 1e6, 3)}


def bench_model(name: str, src: str, inputs: str, workdir: str, repeat: int, opt_repeat: int, tools: list[str]) -> dict:
    row: dict[str, Any] = {"model": name, "tools": {}}
    row["tools"]["original"] = graph_stats(src)
    timed = [("original", src)]
    for tool in tools:
        dst = os.path.join(workdir, f"{name}.{tool}.onnx")
        log(f"  {tool} ...")
        res: dict[str, Any] = {}
        try:
            res.update(run_worker("optimize", tool, src, dst, str(opt_repeat)))
            res.update(graph_stats(dst))
            timed.append((tool, dst))
        except Exception as e:
            msg = _short_error(e)
            if "n/a:" in msg:
                res["na"] = msg[msg.index("n/a:"):]
            else:
                res["error"] = msg
        row["tools"][tool] = res
    log(f"  latency, {len(timed) + 1} sessions interleaved ...")
    listing = os.path.join(workdir, f"{name}.timed.json")
    with open(listing, "w") as f:
        json.dump(timed, f)
    try:
        lat = run_worker("latency", listing, inputs, str(repeat))
    except Exception as e:
        lat = {label: {"error": "latency worker failed: " + _short_error(e)} for label, _ in timed}
    for label, res in lat.items():
        if label == "original:aa":
            row["aa"] = res
        else:
            row["tools"][label].update(res)
    for _, path in timed[1:] + [(None, listing)]:
        for ext in ("", ".data"):
            if os.path.exists(path + ext):
                os.unlink(path + ext)
    row["ratios"] = ratios(row)
    return row


def _best(row: dict, peers: tuple[str, ...], key: str) -> tuple[str | None, float | None]:
    vals = [(row["tools"][p][key], p) for p in peers if p in row["tools"] and row["tools"][p].get(key) is not None]
    if not vals:
        return None, None
    v, p = min(vals)
    return p, v


def ratios(row: dict) -> dict:
    t = row["tools"]
    out: dict[str, Any] = {}

    def ratio(label: str, num: str, key: str, peers: tuple[str, ...]) -> None:
        p, v = _best(row, peers, key)
        a = t.get(num, {}).get(key)
        out[label] = round(a / v, 3) if a is not None and v else None
        out[label + ":peer"] = p

    ratio("nodes", "graphmill", "nodes", STD_PEERS)
    ratio("nodes_ms", "graphmill+ms", "nodes", ("ort-extended",))
    ratio("opt_s", "graphmill", "opt_s", ALL_PEERS)
    ratio("opt_s_onnxsim", "graphmill", "opt_s", ("onnxsim",))
    for key in ("off", "on"):  # like for like: standard ops against standard peers; gm+ms against all
        for label, tool, peers in ((f"lat_{key}", "graphmill", STD_PEERS), (f"lat_{key}_ms", "graphmill+ms", ALL_PEERS)):
            peer, _ = _best(row, peers, f"lat_{key}_ms")
            out[label] = paired_ratio(t.get(tool, {}), t.get(peer, {}), key) if peer else None
            out[label + ":peer"] = peer
        out[f"lat_{key}_aa"] = paired_ratio(row.get("aa", {}), t.get("original", {}), key)
    return out


def paired_ratio(a: dict, b: dict, key: str) -> float | None:
    """Median over rounds of a's time over b's in the same round: drift between rounds cancels out."""
    ta, tb = a.get(f"lat_{key}_rounds_ms"), b.get(f"lat_{key}_rounds_ms")
    if not ta or not tb or len(ta) != len(tb):
        return None
    return round(statistics.median(x / y for x, y in zip(ta, tb)), 3)


# -- the report ---------------------------------------------------------------

SHORT = {"original": "orig", "graphmill": "gm", "graphmill+ms": "gm+ms", "onnxsim": "onnxsim", "onnxslim": "onnxslim",
         "onnxoptimizer": "onnxopt", "onnxscript": "onnxscr", "ort-extended": "ort-ext"}


def _cell(res: dict, key: str, fmt: Callable[[float], str]) -> str:
    if "na" in res:
        return "n/a"
    if "error" in res and res.get(key) is None:
        return "ERR"
    v = res.get(key)
    if v is None:
        return "-"
    return fmt(v) + ("*" if key.startswith("lat_") and res.get("fed_defaults") else "")


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _sci(x: float) -> str:
    return "0" if x == 0 else f"{x:.0e}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_table(title: str, rows: list[dict], cols: list[str], key: str, fmt: Callable[[float], str],
                ratio_cols: list[tuple[str, str]]) -> None:
    mw = max([len("model")] + [len(r["model"]) for r in rows])
    w = 9
    print(f"\n{title}")
    head = f"{'model':<{mw}} " + "".join(f"{SHORT[c]:>{w}}" for c in cols)
    head += "".join(f"{label:>{max(w, len(label) + 2, 15)}}" for label, _ in ratio_cols)
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r['model']:<{mw}} " + "".join(f"{_cell(r['tools'].get(c, {'na': 1}), key, fmt):>{w}}" for c in cols)
        for label, rk in ratio_cols:
            x = r["ratios"].get(rk)
            cell = _ratio(x)
            if x is not None and r["ratios"].get(rk + ":peer") and rk not in ("opt_s_onnxsim",):
                cell += f" {SHORT[r['ratios'][rk + ':peer']]}"
            line += f"{cell:>{max(w, len(label) + 2, 15)}}"
        print(line)


def print_report(rows: list[dict], tools: list[str]) -> None:
    cols = ["original"] + tools
    print_table("Nodes after optimization (ratio: graphmill over the fewest among onnxsim/onnxslim/onnxoptimizer/"
                "onnxscript; gm+ms over ort-extended)", rows, cols, "nodes", lambda x: f"{x:.0f}",
                [("gm/best-peer", "nodes"), ("gm+ms/ort-ext", "nodes_ms")])
    print_table("Optimization wall time, s, file to file (ratio: graphmill over the fastest peer, and over onnxsim)",
                rows, [c for c in cols if c != "original"], "opt_s", _num,
                [("gm/best-peer", "opt_s"), ("gm/onnxsim", "opt_s_onnxsim")])
    for key, what in (("off", "DISABLED (the graph itself)"), ("on", "ENABLED (ORT_ENABLE_ALL)")):
        print_table(f"ONNX Runtime latency, ms, 1 thread, ORT optimizations {what}; sessions interleaved round by "
                    "round (ratios: median of per-round ratios; A/A: the original against itself, the noise floor)",
                    rows, cols, f"lat_{key}_ms", _num, [("gm/std-peer", f"lat_{key}"), ("gm+ms/any-peer", f"lat_{key}_ms"),
                                                        ("A/A", f"lat_{key}_aa")])
    print_table("Max abs output difference from the original", rows, [c for c in cols if c != "original"],
                "max_abs", _sci, [])
    print_table("Max relative output difference (max |diff| / max |ref|, per output)", rows,
                [c for c in cols if c != "original"], "max_rel", _sci, [])
    for r in rows:
        for t in ["original"] + tools:
            res = r["tools"].get(t, {})
            if "error" in res:
                print(f"error: {r['model']} / {t}: {res['error']}")
    fed = [f"{r['model']} / {t}" for r in rows for t in tools if r["tools"].get(t, {}).get("fed_defaults")]
    if fed:
        print("* fed the original's values for initializer-inputs the tool dropped (IR < 4), so ORT cannot "
              "fold or prepack them: " + ", ".join(fed))
    nas = sorted({t for r in rows for t in tools if "na" in r["tools"].get(t, {})})
    for t in nas:
        print(f"n/a: {t}: " + next(r["tools"][t]["na"] for r in rows if "na" in r["tools"].get(t, {})))
    losses(rows)


def losses(rows: list[dict]) -> None:
    """Where graphmill has more nodes than the best standard peer: the op counts that differ."""
    out = []
    for r in rows:
        gm = r["tools"].get("graphmill", {})
        p = r["ratios"].get("nodes:peer")
        if gm.get("nodes") is None or p is None or gm["nodes"] <= r["tools"][p]["nodes"]:
            continue
        a, b = gm["ops"], r["tools"][p]["ops"]
        delta = {op: a.get(op, 0) - b.get(op, 0) for op in sorted(set(a) | set(b)) if a.get(op, 0) != b.get(op, 0)}
        out.append(f"  {r['model']}: graphmill {gm['nodes']} vs {p} {r['tools'][p]['nodes']}; ops graphmill - {p}: "
                   + ", ".join(f"{op} {d:+d}" for op, d in delta.items()))
    if out:
        print("\nWhere graphmill has more nodes than the best standard-ONNX peer:")
        print("\n".join(out))


def write_json(path: str, data: dict) -> None:
    """Atomically, with the project's one writer (imported late: the parent process stays peer-neutral)."""
    from graphmill.frontend.onnx_io import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def versions() -> dict:
    from importlib import metadata

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    for pkg in ("graphmill", "onnx", "onnxruntime", "torch", "numpy", "onnxsim", "onnxslim", "onnxoptimizer",
                "onnxscript", "onnx-ir", "protobuf"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = None
    return env


def worker_main(answer: str, args: list[str]) -> int:
    real_stdout = os.dup(1)
    os.dup2(2, 1)  # a tool's chatter on stdout goes to stderr
    try:
        kind = args[0]
        if kind == "optimize":
            res = worker_optimize(args[1], args[2], args[3], int(args[4]))
        elif kind == "latency":
            res = worker_latency(args[1], args[2], int(args[3]))
        elif kind == "export":
            export_torch_model(args[1], args[2], args[3])
            res = {}
        else:
            raise ValueError(kind)
    except Exception as e:
        print(f"{type(e).__name__}: {e}".replace("\n", " | "), file=sys.stderr, flush=True)
        return 1
    finally:
        os.dup2(real_stdout, 1)
    with open(answer, "w") as f:
        json.dump(res, f)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return worker_main(argv[1], argv[2:])
    light = light_models()
    names = list(TORCH_MODELS) + list(light)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=20, help="timed ONNX Runtime runs per latency (default 20), after one warm-up")
    ap.add_argument("--opt-repeat", type=int, default=1, help="optimization calls per tool and model, median (default 1)")
    ap.add_argument("--models", nargs="+", metavar="NAME",
                    help=f"models to run (space- or comma-separated; default all): {', '.join(names)}")
    ap.add_argument("--tools", nargs="+", metavar="TOOL",
                    help=f"tools to run (default all): {', '.join(TOOLS)}")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.opt_repeat < 1:
        ap.error("--repeat and --opt-repeat must be at least 1")
    chosen = names
    if args.models:
        chosen = [m for a in args.models for m in a.split(",") if m]
        unknown = [m for m in chosen if m not in names]
        if unknown:
            ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(names)}")
    tools = list(TOOLS)
    if args.tools:
        tools = [t for a in args.tools for t in a.split(",") if t]
        unknown = [t for t in tools if t not in TOOLS]
        if unknown:
            ap.error(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(TOOLS)}")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        ap.error(f"--json: the folder of {args.json!r} does not exist")

    env = versions()
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_optimize.") as workdir:
        for i, name in enumerate(chosen, 1):
            inputs = os.path.join(workdir, f"{name}.inputs.npz")
            if name in TORCH_MODELS:
                src = os.path.join(workdir, f"{name}.onnx")
                log(f"[{i}/{len(chosen)}] {name}: exporting (seed {SEED}) ...")
                try:
                    run_worker("export", name, src, inputs)
                except Exception as e:
                    log(f"  export failed: {e}")
                    rows.append({"model": name, "error": f"export failed: {_short_error(e)}",
                                 "tools": {"original": {"error": f"export failed: {_short_error(e)}"}}, "ratios": {}})
                    continue
            else:
                src = light[name]
                log(f"[{i}/{len(chosen)}] {name}")
                write_light_inputs(src, inputs)
            t0 = time.perf_counter()
            rows.append(bench_model(name, src, inputs, workdir, args.repeat, args.opt_repeat, tools))
            log(f"  {time.perf_counter() - t0:.0f} s")
            for f in (src, inputs):
                if f.startswith(workdir) and os.path.exists(f):
                    os.unlink(f)
    elapsed = time.perf_counter() - start
    log(f"done in {elapsed:.0f} s")

    print(f"Graph optimization; latency median of {args.repeat} runs after 1 warm-up, 1 thread; "
          f"opt time median of {args.opt_repeat} cold call(s); "
          + ", ".join(f"{k} {env[k]}" for k in ("graphmill", "onnx", "onnxruntime", "torch", "onnxsim", "onnxslim",
                                                 "onnxoptimizer", "onnxscript"))
          + f"; python {env['python']}, {env['cpus']} cpus")
    print_report(rows, tools)
    if args.json:
        write_json(args.json, {"benchmark": "optimize", "repeat": args.repeat, "opt_repeat": args.opt_repeat,
                               "seed": SEED, "tools": tools, "fused_step": FUSED_STEP, "environment": env,
                               "elapsed_s": round(elapsed, 1), "models": rows})
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
