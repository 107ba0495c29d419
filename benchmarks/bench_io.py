"""ONNX file I/O: graphmill's load + save against onnx and onnx-ir.

For each model and each tool this measures the time to load a model file, the
time to save it again, and their sum, as the median of ``--repeat`` round trips
(default 5) after one warm-up. Every repetition is a full round trip (load,
then save), so graphmill's lazy weights cannot hide work: whatever load defers,
save pays. The tools:

  onnx             ``onnx.load`` / ``onnx.save``
  onnx-ir          ``onnx_ir.load`` / ``onnx_ir.save``
  graphmill        ``graphmill.load`` / ``graphmill.save`` (weights stay lazy)
  graphmill-eager  the same, but after loading every initializer is decoded to
                   numpy (``v.const.numpy()``); that cost is in its load column

Models: ``resnet50-random``, a ResNet-50-sized model with real random weights
(~25.6M float32 parameters, ~100 MB) made at run time in a temporary folder
from onnx's ``light_resnet50.onnx`` by replacing each ConstantOfShape with an
initializer of seeded random data of that shape (nothing is downloaded); and
every light model of onnx's test data (``onnx/backend/test/data/light``).

In the same run each tool's saved file is reloaded with onnx and compared with
the original (``onnx.ModelProto`` equality after
``graphmill.frontend.onnx_io.clear_default_presence`` on both); a tool whose
file differs is named in the ``check`` column. Ratios are graphmill's total
over the peer's total: below 1.0 means graphmill is faster.

Notes: each (model, tool) pair runs in a fresh Python process, so that what
one tool leaves in the allocator does not speed up the next; files are read
from the page cache after the warm-up; the temporary folder is under
``$TMPDIR``. ``graphmill.save`` writes atomically and fsyncs
the file, which onnx and onnx-ir do not; on a real disk that is part of its
save time.

Run (about a minute on a 2-core machine):

    .venv/bin/python benchmarks/bench_io.py
    .venv/bin/python benchmarks/bench_io.py --models resnet50-random --repeat 3 --json io.json
"""

from __future__ import annotations

import argparse
import gc
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
from onnx import numpy_helper

try:
    import graphmill
except ImportError:  # run from a checkout without installing it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import graphmill
from graphmill.frontend.onnx_io import clear_default_presence

try:
    import onnx_ir
except ImportError:
    sys.exit("bench_io: onnx-ir is not installed; install it with `pip install onnx-ir` (it is in the test extra)")

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
RESNET = "resnet50-random"
SEED = 0
TOOLS = ("onnx", "onnx-ir", "graphmill", "graphmill-eager")
# (name in the table, numerator tool, denominator tool), all on total time
RATIOS = (("gm/onnx", "graphmill", "onnx"), ("gm/ir", "graphmill", "onnx-ir"),
          ("gmE/onnx", "graphmill-eager", "onnx"), ("gmE/ir", "graphmill-eager", "onnx-ir"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the models ---------------------------------------------------------------

def light_models() -> dict[str, str]:
    """Light model name (without the ``light_`` prefix) -> path."""
    if not os.path.isdir(LIGHT_DIR):
        sys.exit(f"bench_io: onnx's light test models are not at {LIGHT_DIR}")
    out = {}
    for f in sorted(os.listdir(LIGHT_DIR)):
        if f.startswith("light_") and f.endswith(".onnx"):
            out[f[len("light_"):-len(".onnx")]] = os.path.join(LIGHT_DIR, f)
    return out


def make_resnet50_random(path: str, seed: int = SEED) -> int:
    """Write light_resnet50 with each ConstantOfShape weight replaced by seeded random data.

    The light model builds every weight with ``ConstantOfShape(shape)`` where
    ``shape`` is an int64 initializer; it becomes an initializer of the same
    name as the node's output. The model is IR version 3, where initializers
    are also graph inputs, so the shape input is swapped for a typed input of
    the weight. Returns the number of parameters made.
    """
    with open(os.path.join(LIGHT_DIR, "light_resnet50.onnx"), "rb") as f:
        model = onnx.ModelProto.FromString(f.read())
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    uses: dict[str, int] = {}
    for n in g.node:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
    rng = np.random.default_rng(seed)
    replaced: dict[str, onnx.TensorProto] = {}  # shape initializer name -> new weight
    kept_nodes = []
    params = 0
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input and n.input[0] in inits and uses[n.input[0]] == 1:
            shape = [int(d) for d in numpy_helper.to_array(inits[n.input[0]])]
            fill = 0.0
            dtype = np.dtype(np.float32)
            for a in n.attribute:
                if a.name == "value":
                    v = numpy_helper.to_array(a.t)
                    fill, dtype = float(v.ravel()[0]), v.dtype
            # Around the fill value (so variances stay positive), every mantissa bit random.
            if fill:
                data = fill * rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
            else:
                data = 0.01 * rng.standard_normal(size=shape, dtype=np.float32)
            replaced[n.input[0]] = numpy_helper.from_array(data.astype(dtype, copy=False), name=n.output[0])
            params += data.size
        else:
            kept_nodes.append(n)
    new_inits = [replaced.get(t.name, t) for t in g.initializer]
    new_inputs = []
    for vi in g.input:
        t = replaced.get(vi.name)
        if t is None:
            new_inputs.append(vi)
        else:
            new_inputs.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    del g.initializer[:]
    g.initializer.extend(new_inits)
    del g.input[:]
    g.input.extend(new_inputs)
    del g.node[:]
    g.node.extend(kept_nodes)
    onnx.checker.check_model(model)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return params


# -- the tools ----------------------------------------------------------------

def _gm_eager_load(path: str):
    g = graphmill.load(path)
    for v in g.initializers.values():
        c = v.const
        if hasattr(c, "numpy"):
            c.numpy()
        else:  # a sparse initializer: decode both of its tensors
            c.values.numpy()
            c.indices.numpy()
    return g


LOADERS: dict[str, tuple[Callable[[str], Any], Callable[[Any, str], None]]] = {
    "onnx": (onnx.load, onnx.save),
    "onnx-ir": (onnx_ir.load, onnx_ir.save),
    "graphmill": (graphmill.load, graphmill.save),
    "graphmill-eager": (_gm_eager_load, graphmill.save),
}


def normalized(path: str) -> onnx.ModelProto:
    m = onnx.load(path)
    clear_default_presence(m)
    return m


def bench_tool(tool: str, path: str, out: str, repeat: int) -> dict:
    load, save = LOADERS[tool]
    loads: list[float] = []
    saves: list[float] = []
    totals: list[float] = []
    for i in range(repeat + 1):  # the first is the warm-up
        gc.collect()
        t0 = time.perf_counter()
        obj = load(path)
        t1 = time.perf_counter()
        save(obj, out)
        t2 = time.perf_counter()
        del obj
        if i:
            loads.append(t1 - t0)
            saves.append(t2 - t1)
            totals.append(t2 - t0)
    ms = lambda xs: round(statistics.median(xs) * 1e3, 3)  # noqa: E731
    return {"load_ms": ms(loads), "save_ms": ms(saves), "total_ms": ms(totals),
            "total_ms_all": [round(t * 1e3, 3) for t in totals]}


def run_worker(tool: str, path: str, out: str, repeat: int) -> dict:
    """``bench_tool`` in a fresh Python process.

    What one tool leaves in the allocator (freed but still mapped heap, a raised
    mmap threshold) makes the next one's 100 MB allocations cheaper, which moved
    totals by up to 2x in-process; each (model, tool) pair therefore starts clean.
    """
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", tool, path, out, str(repeat)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"worker exited with status {p.returncode}")
    return json.loads(p.stdout)


def bench_model(name: str, path: str, workdir: str, repeat: int) -> dict:
    ref = normalized(path)
    row: dict[str, Any] = {"model": name, "path": path, "size_bytes": os.path.getsize(path),
                           "size_mb": round(os.path.getsize(path) / 1e6, 3), "tools": {}}
    for tool in TOOLS:
        out = os.path.join(workdir, f"{name}.{tool}.onnx")
        log(f"  {tool} ...")
        try:
            res = run_worker(tool, path, out, repeat)
            res["roundtrip_equal"] = normalized(out) == ref
        except Exception as e:  # a tool failing on a model is a result, not the end of the run
            res = {"error": f"{type(e).__name__}: {e}", "roundtrip_equal": False}
        if os.path.exists(out):
            os.unlink(out)
        row["tools"][tool] = res
    ratios = {}
    for label, num, den in RATIOS:
        a, b = row["tools"][num].get("total_ms"), row["tools"][den].get("total_ms")
        ratios[label] = round(a / b, 3) if a is not None and b else None
    for phase in ("load", "save"):  # the same per phase, for the JSON reader
        for label, num, den in RATIOS:
            a, b = row["tools"][num].get(f"{phase}_ms"), row["tools"][den].get(f"{phase}_ms")
            ratios[f"{label}:{phase}"] = round(a / b, 3) if a is not None and b else None
    row["ratios"] = ratios
    row["check_failed"] = [t for t in TOOLS if not row["tools"][t]["roundtrip_equal"]]
    return row


# -- the report ---------------------------------------------------------------

def _ms(x: float | None) -> str:
    if x is None:
        return "ERR"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def print_table(rows: list[dict]) -> None:
    short = {"onnx": "onnx", "onnx-ir": "onnx-ir", "graphmill": "graphmill (lazy)", "graphmill-eager": "graphmill (eager)"}
    w = 8
    mw = max([len("model")] + [len(r["model"]) for r in rows])
    group = f"{'':<{mw}} {'':>7} "
    sub = f"{'model':<{mw}} {'MB':>7} "
    for t in TOOLS:
        group += f"| {short[t] + ' ms':^{3 * w}} "
        sub += "| " + "".join(f"{c:>{w}}" for c in ("load", "save", "total")) + " "
    group += f"| {'total ratio, <1: graphmill faster':^{4 * (w + 1)}} |"
    sub += "| " + "".join(f"{label:>{w + 1}}" for label, _, _ in RATIOS) + " | check"
    print(group)
    print(sub)
    print("-" * len(sub))
    for r in rows:
        line = f"{r['model']:<{mw}} {r['size_mb']:>7.3f} "
        for t in TOOLS:
            res = r["tools"][t]
            line += "| " + "".join(f"{_ms(res.get(k)):>{w}}" for k in ("load_ms", "save_ms", "total_ms")) + " "
        line += "| "
        for label, _, _ in RATIOS:
            x = r["ratios"][label]
            line += f"{(f'{x:.2f}' if x is not None else 'ERR'):>{w + 1}}"
        line += " | " + ("ok" if not r["check_failed"] else "DIFFERS: " + ", ".join(r["check_failed"]))
        print(line)
    errors = [(r["model"], t, r["tools"][t]["error"]) for r in rows for t in TOOLS if "error" in r["tools"][t]]
    for m, t, e in errors:
        print(f"error: {m} / {t}: {e}")


def write_json(path: str, data: dict) -> None:
    """Atomically, with the project's one writer (imported late: the parent process stays peer-neutral)."""
    from graphmill.frontend.onnx_io import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=2) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    light = light_models()
    names = [RESNET] + list(light)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timed round trips per model and tool (default 5), after one warm-up")
    ap.add_argument("--models", nargs="+", metavar="NAME",
                    help=f"models to run (space- or comma-separated; default all): {', '.join(names)}")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    ap.add_argument("--worker", nargs=4, metavar=("TOOL", "MODEL", "OUT", "REPEAT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:  # one (model, tool) measurement, in the child process run_worker started
        tool, path, out, repeat = args.worker
        print(json.dumps(bench_tool(tool, path, out, int(repeat))))
        return 0
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    chosen = names
    if args.models:
        chosen = [m for arg in args.models for m in arg.split(",") if m]
        unknown = [m for m in chosen if m not in names]
        if unknown:
            ap.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(names)}")
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        ap.error(f"--json: the folder of {args.json!r} does not exist")

    from google.protobuf.internal import api_implementation
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "graphmill": graphmill.__version__, "onnx": onnx.__version__, "onnx_ir": onnx_ir.__version__,
           "numpy": np.__version__, "protobuf": __import__("google.protobuf").protobuf.__version__,
           "protobuf_impl": api_implementation.Type()}
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_io.") as workdir:
        for i, name in enumerate(chosen, 1):
            if name == RESNET:
                path = os.path.join(workdir, RESNET + ".onnx")
                log(f"[{i}/{len(chosen)}] {name}: generating (seed {SEED}) ...")
                params = make_resnet50_random(path)
                log(f"  {params / 1e6:.1f}M parameters, {os.path.getsize(path) / 1e6:.1f} MB")
            else:
                path = light[name]
                log(f"[{i}/{len(chosen)}] {name}")
            rows.append(bench_model(name, path, workdir, args.repeat))
    elapsed = time.perf_counter() - start
    log(f"done in {elapsed:.1f} s")

    print(f"ONNX load/save, median of {args.repeat} round trips after 1 warm-up; "
          f"graphmill {env['graphmill']}, onnx {env['onnx']}, onnx-ir {env['onnx_ir']}, "
          f"protobuf {env['protobuf']} ({env['protobuf_impl']}), python {env['python']}, {env['cpus']} cpus")
    print_table(rows)
    if args.json:
        write_json(args.json, {"benchmark": "io", "repeat": args.repeat, "warmup": 1, "seed": SEED,
                               "tools": list(TOOLS), "ratios": {l: [n, d] for l, n, d in RATIOS},
                               "environment": env, "elapsed_s": round(elapsed, 1), "models": rows})
        log(f"wrote {args.json}")
    # A peer writing a different file is reported; graphmill writing one is a failure.
    return 1 if any(t.startswith("graphmill") for r in rows for t in r["check_failed"]) else 0


if __name__ == "__main__":
    sys.exit(main())
