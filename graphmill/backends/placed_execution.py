"""Execution check of a placement: the placed graph cut into per-device subgraphs that run in separate processes
exchanging tensors over ``torch.distributed`` (gloo), compared with one ONNX Runtime session of the whole graph.

The compute nodes, in the graph's order, are cut into *runs*: maximal stretches on one device
(``node.meta["device"]``). Each run becomes a graph of its own (its inputs: the values it reads that it does not
compute, constants copied in; its outputs: the values later runs or the model's outputs read) and an ONNX Runtime
session in the process of its device. Every process walks the runs in order: for a run of its own it receives the
inputs it lacks from their producing device (``dist.recv``, tagged by value), runs the session, and sends each
output once to every other device that reads it (``dist.isend``; the sends are waited for at the end); the graph
inputs are given to every process. The model's outputs come back to the parent through files. Processes are
spawned here (``torch.multiprocessing``, a free localhost port); the first pass warms the sessions, the step
time is the median of the timed passes (the slowest process's).
"""

from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from graphmill.ir import Graph, Node, TensorType, UserInputError, Value
from graphmill.ir.partition import clone_nodes, constant_closure
from graphmill.ir.summary import constant_values, is_constant_node
from graphmill.util.interrupts import join_or_stop, start_spawned

__all__ = ["device_runs", "run_placed"]


def device_runs(graph: Graph) -> list[tuple[int, list[Node]]]:
    """(device, nodes) for each maximal stretch of compute nodes on one device, in the graph's order."""
    constant = constant_values(graph)
    runs: list[tuple[int, list[Node]]] = []
    for n in graph.nodes:
        if is_constant_node(n, constant):
            continue
        d = n.meta.get("device")
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise UserInputError(f"{n.describe()} has no device (node.meta['device']); place the graph first")
        if runs and runs[-1][0] == d:
            runs[-1][1].append(n)
        else:
            runs.append((d, [n]))
    return runs


def _run_graph(graph: Graph, k: int, nodes: list[Node], later_reads: set[int], constant: set[int]) -> Graph:
    g = Graph(f"{graph.name}_run{k}", opset_imports=graph.opset_imports)
    vmap: dict[int, Value] = {}
    # the constant nodes the run reads, transitively, in graph order: recomputed here, not received
    need_const = constant_closure(graph, [v for n in nodes for v in n.inputs],
                                  lambda p: any(o is not None and id(o) in constant for o in p.outputs))

    def mapped(v: Value | None) -> Value | None:
        if v is None:
            return None
        if id(v) in vmap:
            return vmap[id(v)]
        if v.const is not None:
            vmap[id(v)] = g.add_initializer(Value(v.name, v.type, const=v.const))
        else:
            vmap[id(v)] = g.add_input(Value(v.name, v.type))
        return vmap[id(v)]

    clone_nodes(g, need_const + nodes, mapped, vmap, keep_meta=False)
    g.outputs = [vmap[id(o)] for n in nodes for o in n.outputs if o is not None and id(o) in later_reads]
    return g


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_placed(graph: Graph, inputs: dict[str, np.ndarray] | None = None, *, runs: int = 3, seed: int = 0,
               rtol: float = 1e-4, atol: float = 1e-5) -> dict:
    """Run the placed ``graph`` on one process per device and compare with one ONNX Runtime session.

    Returns ``{"devices", "runs", "outputs_equal", "max_abs_diff", "tolerance", "step_time_s",
    "reference_step_time_s", "messages", "bytes_sent"}``; the per-output arrays are in ``"outputs"``. Outputs
    are compared as ``optimize`` compares them (``onnxruntime.compare_outputs`` with ``atol`` scaled by the
    output's largest magnitude).
    """
    import torch.multiprocessing as mp

    from graphmill.backends.onnxruntime import OrtSession, compare_outputs, random_inputs

    constant = constant_values(graph)
    plan = device_runs(graph)
    devices = sorted({d for d, _ in plan})
    rank_of = {d: i for i, d in enumerate(devices)}
    inputs = dict(inputs) if inputs is not None else random_inputs(graph, seed=seed)
    # who produces what, who reads what
    made_in: dict[int, int] = {}
    for k, (_, nodes) in enumerate(plan):
        for n in nodes:
            for o in n.outputs:
                if o is not None:
                    made_in[id(o)] = k
    out_ids = {id(v) for v in graph.outputs}
    later: list[set[int]] = [set() for _ in plan]
    for k, (_, nodes) in enumerate(plan):
        for n in nodes:
            for v in n.inputs:
                if v is not None and id(v) in made_in and made_in[id(v)] != k:
                    later[made_in[id(v)]].add(id(v))
    for v in graph.outputs:
        if id(v) in made_in:
            later[made_in[id(v)]].add(id(v))
    run_graphs = [_run_graph(graph, k, nodes, later[k], constant) for k, (_, nodes) in enumerate(plan)]
    for g in run_graphs:
        for v in list(g.inputs) + list(g.outputs):
            t = v.type
            if not isinstance(t, TensorType) or t.shape is None or any(not isinstance(d, int) for d in t.shape):
                raise UserInputError(f"value {v.name!r} crosses devices with an unknown shape ({t}); the execution "
                                     "check needs static shapes")
    # a plan every process follows: per run, its device, input names (with producing rank or -1: a graph input),
    # output names with the ranks that read them
    value_rank: dict[str, int] = {}
    for k, (d, _) in enumerate(plan):
        for v in run_graphs[k].outputs:
            value_rank[v.name] = rank_of[d]
    readers: dict[str, set[int]] = {}
    for k, (d, _) in enumerate(plan):
        for v in run_graphs[k].inputs:
            readers.setdefault(v.name, set()).add(rank_of[d])
    steps = [{"rank": rank_of[d], "inputs": [(v.name, value_rank.get(v.name, -1), list(v.type.shape),
                                              np.dtype(v.type.dtype.numpy()).str) for v in run_graphs[k].inputs],
              "outputs": [(v.name, sorted(readers.get(v.name, set()) - {rank_of[d]})) for v in run_graphs[k].outputs]}
             for k, (d, _) in enumerate(plan)]
    graph_outputs = [v.name for v in graph.outputs]
    ref = OrtSession(graph)
    ref.run(inputs)
    t_ref = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        want = ref.run(inputs)
        t_ref.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory(prefix="graphmill-placed-") as tmp:
        port = _free_port()
        ctx = start_spawned(mp, _entry, (len(devices), port, run_graphs, steps, inputs, graph_outputs, runs, tmp),
                            len(devices), tmp)
        join_or_stop(ctx)  # a SIGTERM to the parent alone stops the device processes too
        got: dict[str, np.ndarray] = {}
        times, msgs, sent = [], 0, 0
        for r in range(len(devices)):
            with np.load(os.path.join(tmp, f"rank{r}.npz"), allow_pickle=False) as z:
                for key in z.files:
                    if key.startswith("out:"):
                        got[key[4:]] = z[key]
                times.append(z["__times"])
                msgs += int(z["__msgs"])
                sent += int(z["__bytes"])
    # optimize's criterion (atol scaled by the output's largest magnitude): a per-element allclose flagged the
    # README's own ResNet-18 (logits in the tens, one near-zero logit off by 3.8e-5) as "outputs DIFFER"
    cmp = compare_outputs(want, got, rtol=rtol, atol=atol, names=list(graph_outputs), scale_atol=True)
    step = statistics.median(float(np.max([t[i] for t in times])) for i in range(len(times[0])))
    return {"devices": [int(d) for d in devices], "runs": len(plan), "outputs_equal": cmp.ok,
            "max_abs_diff": cmp.max_abs, "tolerance": cmp.tolerance, "step_time_s": step,
            "reference_step_time_s": statistics.median(t_ref), "messages": msgs, "bytes_sent": sent,
            "outputs": got}


def _entry(rank: int, world: int, port: int, run_graphs: list[Graph], steps: list[dict], inputs: dict,
           graph_outputs: list[str], runs: int, tmp: str) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from graphmill.backends.onnxruntime import OrtSession

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    names = sorted({n for s in steps for n, *_ in s["inputs"]} | {n for s in steps for n, _ in s["outputs"]})
    tag = {n: i for i, n in enumerate(names)}
    sessions = {k: OrtSession(run_graphs[k]) for k, s in enumerate(steps) if s["rank"] == rank}
    times: list[float] = []
    msgs = nbytes = 0
    results: dict[str, np.ndarray] = {}
    for it in range(max(1, runs) + 1):  # the first pass warms up
        dist.barrier()
        t0 = time.perf_counter()
        have: dict[str, Any] = dict(inputs)
        pending = []
        for k, s in enumerate(steps):
            if s["rank"] != rank:
                continue
            feeds = {}
            for name, src, shape, dt in s["inputs"]:
                if name not in have:
                    buf = torch.from_numpy(np.empty(shape, dtype=np.dtype(dt)))
                    dist.recv(buf, src=src, tag=tag[name])
                    have[name] = buf.numpy()
                feeds[name] = have[name]
            out = sessions[k].run(feeds)
            for name, dests in s["outputs"]:
                have[name] = out[name]
                t = torch.from_numpy(np.ascontiguousarray(out[name]))
                for dst in dests:
                    pending.append(dist.isend(t, dst=dst, tag=tag[name]))
                    msgs += it == 0
                    nbytes += t.numel() * t.element_size() if it == 0 else 0
        for p in pending:
            p.wait()
        times.append(time.perf_counter() - t0)
        results = {n: have[n] for n in graph_outputs if n in have and any(
            n in [o for o, _ in s["outputs"]] for s in steps if s["rank"] == rank)}
    dist.barrier()
    dist.destroy_process_group()
    arrays = {f"out:{k}": np.asarray(v) for k, v in results.items()}
    np.savez(os.path.join(tmp, f"rank{rank}.npz"), __times=np.array(times[1:]), __msgs=np.array(msgs),
             __bytes=np.array(nbytes), **arrays)
