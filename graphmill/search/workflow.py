"""What ``graphmill search`` does, as functions: resolve the space, evaluator and objective the user named,
check everything before anything is written, run the search into a folder, write its outputs.

The folder (``out``) holds ``checkpoint.json`` (the run's state; rerunning the same command resumes from it),
``history.jsonl`` (one trial per line, in evaluation order; it grows as trials finish, for ``tail -F``),
``best.onnx`` (the best network, for MnasNet's space: trained proxy weights with the built-in evaluator),
``best_so_far.png`` and, when the trials report both ``accuracy`` and ``latency``, ``pareto.png`` (the
accuracy/latency Pareto front).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from graphmill.search.runner import check_takes_a_config
from graphmill.search.space import Space
from graphmill.util.errors import UserInputError
from graphmill.util.files import TEXT_FILE_LIMIT, check_out_folder, parse_json, read_user_file
from graphmill.util.suggest import did_you_mean

#: objective name -> (alpha, beta) of MnasNet's reward ACC x (LAT/T)^w; None: the accuracy alone
OBJECTIVE_NAMES = ("mnasnet", "mnasnet-hard", "accuracy")
OBJECTIVE_KEYS = ("target_ms", "alpha", "beta")
BUILTIN_SPACES = ("mnasnet", "accelerator", "mnasnet+accelerator")
#: What `graphmill search` (a space, or a --method) writes in OUT: an input by one of these names there would be
#: replaced (tests/search/test_out_files.py keeps the list equal to what the code writes).
OUT_FILES = ("autohas.png", "best.onnx", "best_accel.toml", "best_so_far.png", "best_target.onnx", "checkpoint.json",
             "checkpoint.pt", "checkpoint.step1.json", "checkpoint.step2.json", "evanet.png", "history.jsonl",
             "job.json", "nahas.png", "pareto.png", "report.json", "settings.json", "weights")


def load_space(spec: str) -> tuple[Space, str]:
    """``(space, name)`` for a built-in name (``mnasnet``, ...) or a JSON file in the documented schema.

    A malformed file is a ``UserInputError`` naming the file and the JSON path (``space.params.lr.low``) or
    the line and column of a syntax error; a space without parameters is refused too.
    """
    from graphmill.search.spaces import SPACES

    if spec in SPACES:
        return SPACES[spec](), spec
    if not spec.lower().endswith(".json") and not os.path.exists(spec):
        raise UserInputError(f"--space {spec!r}: not a built-in space{did_you_mean(spec, SPACES)} nor a JSON file; "
                             f"built-in: {', '.join(SPACES)}")
    try:
        text = read_user_file(spec, TEXT_FILE_LIMIT, "a search space (JSON)").decode("utf-8")
    except FileNotFoundError:
        raise UserInputError(f"{spec}: no such space file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"{spec}: cannot read the space file: {e}") from None
    try:
        data = parse_json(text)
    except json.JSONDecodeError as e:
        raise UserInputError(f"{spec}:{e.lineno}:{e.colno}: not valid JSON: {e.msg}") from None
    except ValueError as e:
        raise UserInputError(f"{spec}: not valid JSON: {e}") from None
    try:
        space = Space.from_json(data, "space")
    except UserInputError as e:
        raise UserInputError(f"{spec}: {e}") from None
    if not list(space.params()) or space.size() == 0:
        raise UserInputError(f"{spec}: the space has no parameters to search")
    return space, "file"


def parse_objective(text: str | None) -> tuple[str, dict[str, float]] | None:
    """``"mnasnet:target_ms=40,alpha=-0.07"`` -> ``("mnasnet", {"target_ms": 40.0, "alpha": -0.07})``."""
    if text is None:
        return None
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in OBJECTIVE_NAMES:
        raise UserInputError(f"--objective {name!r}: unknown objective{did_you_mean(name, OBJECTIVE_NAMES)}; "
                             f"known: {', '.join(OBJECTIVE_NAMES)}")
    params: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in OBJECTIVE_KEYS:
            raise UserInputError(f"--objective {text!r}: unknown option {key!r}{did_you_mean(key, OBJECTIVE_KEYS)}; "
                                 f"options: {', '.join(OBJECTIVE_KEYS)}")
        try:
            params[key] = float(value)
        except ValueError:
            raise UserInputError(f"--objective {text!r}: {key} needs a number, got {value!r}") from None
        if not math.isfinite(params[key]):  # inf/nan reached the checkpoint's fingerprint: "not JSON-able", an
            # empty --out folder left behind (an outside check)
            raise UserInputError(f"--objective {text!r}: {key} needs a finite number, got {value!r}")
        if not eq:
            raise UserInputError(f"--objective {text!r}: write {key}=VALUE")
    if "target_ms" in params and not params["target_ms"] > 0:
        raise UserInputError(f"--objective {text!r}: target_ms must be > 0")
    return name, params


@dataclass
class AccuracyObjective:
    """``--objective accuracy`` for a user evaluator: the reward is its ``accuracy`` metric."""

    metric: str = "accuracy"

    def __call__(self, metrics: dict) -> float:
        if self.metric not in metrics:
            raise KeyError(f"the evaluator returned no {self.metric!r} metric (has: {', '.join(sorted(metrics))})")
        return float(metrics[self.metric])


def user_objective(objective: tuple[str, dict]) -> Callable[[dict], float]:
    """The ``search.run(objective=...)`` turning a user evaluator's metrics into the reward."""
    from graphmill.search.objectives import MnasNetObjective

    name, params = objective
    if name == "accuracy":
        return AccuracyObjective()
    if "target_ms" not in params:
        raise UserInputError(f"--objective {name} with a user evaluator needs the latency target: "
                             f"--objective {name}:target_ms=T (the evaluator reports 'accuracy' and 'latency' in ms)")
    base = MnasNetObjective.hard(params["target_ms"]) if name == "mnasnet-hard" else \
        MnasNetObjective.soft(params["target_ms"])
    if "alpha" in params:
        base.alpha = params["alpha"]
    if "beta" in params:
        base.beta = params["beta"]
    return base


def import_evaluator(spec: str) -> Callable[[dict], Any]:
    """The callable ``module:function`` names (``module`` importable from the current folder or the path)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise UserInputError(f"--evaluator {spec!r}: expected 'builtin' or MODULE:FUNCTION"
                             + ("" if sep else did_you_mean(spec, ["builtin"])))
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod_name)
    except (Exception, SystemExit) as e:  # noqa: BLE001 -- any failure to import is the user's to fix, in one
        # line; a module calling sys.exit() as it is imported ended the command with its status and no word
        first = str(e).splitlines()[0] if str(e) else ""
        if isinstance(e, SystemExit):
            first = f"the module called sys.exit({e.code!r}) as it was imported"
        raise UserInputError(f"--evaluator {spec!r}: cannot import {mod_name!r}: {type(e).__name__}: {first}") \
            from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise UserInputError(f"--evaluator {spec!r}: {mod_name} has no {attr!r}{did_you_mean(part, names)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserInputError(f"--evaluator {spec!r}: {attr} is a {type(obj).__name__}, not a callable")
    check_takes_a_config(obj, f"--evaluator {spec!r}")
    return obj


def make_evaluator(spec: str, space_name: str, *, objective: tuple[str, dict] | None = None, accel: Any = None,
                   seed: int = 0, proxy: dict | None = None) -> Callable[[dict], Any]:
    """The evaluator ``spec`` names for the space ``space_name`` (see ``load_space``), with its options.

    The built-in evaluators compute their reward themselves (``objective`` configures it); a user
    evaluator's objective is applied by ``search.run`` (``user_objective``).
    """
    from graphmill.search.evaluators import AcceleratorEvaluator, MnasNetEvaluator

    proxy = dict(proxy or {})
    if proxy and (spec != "builtin" or space_name not in ("mnasnet", "mnasnet+accelerator")):
        # --steps 5 beside a user evaluator was accepted and ignored (an outside check)
        who = f"--evaluator {spec}" if spec != "builtin" else f"the {space_name} space's built-in evaluator"
        raise UserInputError(f"{who} takes no proxy settings (given: {', '.join(sorted(proxy))}): they configure "
                             "the built-in evaluator's proxy task of the mnasnet spaces")
    if spec == "builtin":
        if space_name in ("mnasnet", "mnasnet+accelerator"):
            name, params = objective or ("mnasnet", {})
            try:
                ev: Callable = MnasNetEvaluator(seed=seed, accel=accel, objective=name, **params, **proxy)
            except TypeError as e:
                raise UserInputError(f"built-in evaluator: {e}") from None
        elif space_name == "accelerator":
            if objective is not None:
                raise UserInputError("--objective: the accelerator space's built-in evaluator scores latency only")
            ev = AcceleratorEvaluator(base=accel)
        else:
            raise UserInputError(f"--evaluator builtin scores the built-in spaces ({', '.join(BUILTIN_SPACES)}); "
                                 "for a space file give --evaluator MODULE:FUNCTION")
    else:
        ev = import_evaluator(spec)
    return ev


# -- the run's folder ------------------------------------------------------------------------------------------

def plot_best_so_far(path: str, history: list, title: str = "") -> None:
    """best_so_far.png: every trial's reward and the best reward so far against the number of trials."""
    from graphmill.util.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    xs = [i + 1 for i, t in enumerate(history) if t.status == "ok" and t.reward is not None]
    ys = [t.reward for t in history if t.status == "ok" and t.reward is not None]
    best, curve = float("-inf"), []
    for t in history:
        if t.status == "ok" and t.reward is not None:
            best = max(best, t.reward)
        curve.append(best if best > float("-inf") else None)
    ax.scatter(xs, ys, s=12, alpha=0.5, label="trial")
    steps = [(i + 1, v) for i, v in enumerate(curve) if v is not None]
    if steps:
        ax.step([s[0] for s in steps], [s[1] for s in steps], where="post", color="C3", label="best so far")
    failed = sum(1 for t in history if t.status != "ok")
    ax.set_xlabel("trials")
    ax.xaxis.get_major_locator().set_params(integer=True)  # a trial count: no 5.5 on a short run's axis
    ax.set_ylabel("reward")
    ax.set_title(title or f"{len(history)} trials ({failed} failed)")
    ax.legend(loc="best", framealpha=0.7)  # where it covers the fewest points (lower right hid trials)
    ax.grid(alpha=0.3)
    save_figure(fig, path, tight=True)


def plot_pareto(path: str, result: Any) -> bool:
    """pareto.png: accuracy against latency of every trial, the Pareto front highlighted; False if no trial
    reports both ``accuracy`` and ``latency``."""
    from graphmill.util.plots import pyplot, save_figure

    pts = [(float(t.metrics["accuracy"]), float(t.metrics["latency"])) for t in result.history
           if t.status == "ok" and isinstance(t.metrics.get("accuracy"), (int, float))
           and isinstance(t.metrics.get("latency"), (int, float))]
    if not pts:
        return False
    front = [(float(t.metrics["accuracy"]), float(t.metrics["latency"])) for t in result.pareto("accuracy", "latency")]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.scatter([p[1] for p in pts], [p[0] for p in pts], s=12, alpha=0.5, label="trial")
    ax.step([p[1] for p in front], [p[0] for p in front], where="post", color="C3", marker="o", label="Pareto front")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"accuracy / latency: {len(front)} of {len(pts)} trials on the front")
    ax.legend(loc="best", framealpha=0.7)  # where it covers the fewest points (lower right hid trials)
    ax.grid(alpha=0.3)
    save_figure(fig, path, tight=True)
    return True


def best_model(evaluate: Any, space_name: str, config: dict, seed: int = 0):
    """The best configuration's network for MnasNet's space (None for other spaces).

    With the built-in evaluator: the proxy network with the trained weights that were measured (a retraining,
    deterministic); with another evaluator: the full-size network with seeded weights.
    """
    from graphmill.search.evaluators import MnasNetEvaluator
    from graphmill.search.spaces import MnasNetBuilder

    if space_name not in ("mnasnet", "mnasnet+accelerator"):
        return None
    if isinstance(evaluate, MnasNetEvaluator):
        graph, _ = evaluate.trained_model(config)
        return graph
    return MnasNetBuilder(seed=seed)(config)


# -- the whole command ------------------------------------------------------------------------------------------

def parse_options(items: list[str] | None) -> dict[str, Any]:
    """``["population=20", "sample=5"]`` -> ``{"population": 20, "sample": 5}`` (values as JSON, else text)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserInputError(f"--option {item!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = parse_json(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
        except ValueError as e:
            raise UserInputError(f"--option {key.strip()}: {e}") from None
    return options


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{name}={value!r}: must be an integer >= 1")
    return value


def check_executor(executor: str | None, workers: int, ray_address: str | None = None) -> None:
    """A ``UserInputError`` for an unknown executor, ``inprocess`` with more than one worker, a ``ray_address``
    without ``ray``, or ``ray`` without ray installed (shared by ``--space`` searches and the ``--method`` ones)."""
    from graphmill.search.executors import EXECUTORS

    if executor is not None and executor not in EXECUTORS:
        raise UserInputError(f"--executor {executor!r}: unknown{did_you_mean(executor, EXECUTORS)}; "
                             f"use one of {', '.join(EXECUTORS)}")
    check_ray_address(executor, ray_address)
    if executor == "inprocess" and workers != 1:
        raise UserInputError(f"--executor inprocess runs one evaluation at a time; --workers {workers} needs "
                             "local or ray")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserInputError("--executor ray needs ray: pip install ray") from None


def check_ray_address(executor: str | None, ray_address: str | None) -> None:
    """``--ray-address`` names a cluster for the ``ray`` executor; with any other the run would go on locally as
    if no cluster was named, so it is refused; so is an address where nothing answers (``ray.init`` would wait
    there without end)."""
    if ray_address is not None and executor != "ray":
        raise UserInputError("--ray-address needs --executor ray")
    if executor == "ray" and ray_address:  # before anything is written: ray.init would wait without end
        from graphmill.search.executors.ray import check_address

        check_address(ray_address)


def prepare(space_spec: str, evaluator_spec: str = "builtin", *, strategy: str = "default",
            options: list[str] | dict | None = None, budget: int = 50, workers: int = 1,
            executor: str | None = None, objective: str | None = None, accel: str | None = None,
            timeout: float | None = None, seed: int = 0, proxy: dict | None = None,
            ray_address: str | None = None) -> dict:
    """Everything the user named, resolved and checked; a ``UserInputError`` before anything is written."""
    from graphmill.search.strategies import strategy_class

    space, space_name = load_space(space_spec)
    obj = parse_objective(objective)
    accel_settings = None
    if accel is not None:
        from graphmill.backends.simulator.config import load_accel

        accel_settings = load_accel(accel).to_dict()
    opts = options if isinstance(options, dict) else parse_options(options)
    budget, workers = _count("--budget", budget), _count("--workers", workers)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"--seed {seed!r}: must be an integer >= 0")
    # built once here, not only checked, so that a bad option value (population=0, a grid over a continuous
    # space) is refused before the output folder exists
    strategy_class(strategy)(space, seed=seed, **dict(opts))
    check_executor(executor, workers, ray_address)
    if timeout is not None and not timeout > 0:
        raise UserInputError(f"--timeout {timeout!r}: must be > 0 seconds")
    evaluate = make_evaluator(evaluator_spec, space_name, objective=obj, accel=accel, seed=seed, proxy=proxy)
    run_objective = user_objective(obj) if obj is not None and evaluator_spec != "builtin" else None
    return dict(space=space, space_name=space_name, space_spec=space_spec, evaluate=evaluate, objective=run_objective,
                strategy=strategy,
                options=opts, budget=budget, workers=workers, executor=executor, timeout=timeout, seed=seed,
                fingerprint=fingerprint(evaluator_spec, evaluate, obj, accel_settings))


def fingerprint(evaluator_spec: str, evaluate: Any, objective: tuple[str, dict] | None,
                accel: dict | None) -> dict:
    """What the rewards of a ``graphmill search`` run depend on besides its space, strategy, options and seed
    (which the checkpoint records anyway): the evaluator, a user evaluator's objective, the accelerator's
    settings (``accel``: the TOML's content, not its path) and the built-in evaluator's proxy settings
    (defaults filled in, so that ``--steps 100`` and no ``--steps`` are the same run). Stored in the
    checkpoint, so that rerunning into the same folder with another evaluator is refused instead of resuming
    with two evaluators' rewards in one history."""
    import dataclasses

    settings = {}
    if evaluator_spec == "builtin" and dataclasses.is_dataclass(evaluate):
        settings = {f.name: getattr(evaluate, f.name) for f in dataclasses.fields(evaluate)
                    if f.repr and f.name not in ("accel", "base", "seed")}
    applied = list(objective) if objective is not None and evaluator_spec != "builtin" else None
    return {"evaluator": evaluator_spec, "objective": applied, "settings": settings, "accel": accel}


def run_search(space_spec: str, evaluator_spec: str = "builtin", *, out: str, strategy: str = "default",
               options: list[str] | dict | None = None, budget: int = 50, workers: int = 1,
               executor: str | None = None, ray_address: str | None = None, objective: str | None = None,
               accel: str | None = None, timeout: float | None = None, seed: int = 0, proxy: dict | None = None,
               progress: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) a search into the folder ``out`` and write its outputs (module docstring).

    ``progress(line)`` receives one line per finished trial. Returns ``{"result": SearchResult, "summary":
    {...JSON-able...}}``; ``summary["interrupted"]`` is True when Ctrl-C stopped it (the checkpoint holds every
    finished trial: the same call resumes).
    """
    from graphmill import search
    from graphmill.search.runner import HistoryFollower

    out = check_out_folder(out, "search", "checkpoint.json, history.jsonl, best.onnx and the plots")
    job = prepare(space_spec, evaluator_spec, strategy=strategy, options=options, budget=budget, workers=workers,
                  executor=executor, objective=objective, accel=accel, timeout=timeout, seed=seed, proxy=proxy,
                  ray_address=ray_address)
    os.makedirs(out, exist_ok=True)
    checkpoint = os.path.join(out, "checkpoint.json")
    history = HistoryFollower(os.path.join(out, "history.jsonl"))
    new_trials = 0  # finished by this call

    def on_trial(info: dict) -> None:
        """history.jsonl follows the run (``HistoryFollower``); ``finish`` rewrites it atomically at the end
        unless it is complete already (a ``tail -F`` would show every line again)."""
        nonlocal new_trials
        first = history.add(info["trial"], lambda: info["history"])
        if first and progress is not None and len(info["history"]) > 1:  # the trial count alone said it went on
            progress(f"[search] resumed from {checkpoint}: {len(info['history']) - 1} trial(s) recorded before")
        new_trials += 1
        if progress is not None:
            progress(info["line"])

    result = search.run(job["space"], job["evaluate"], strategy=job["strategy"], budget=job["budget"], seed=seed,
                        workers=job["workers"], executor=job["executor"], checkpoint=checkpoint,
                        timeout=job["timeout"], objective=job["objective"], ray_address=ray_address,
                        strategy_options=job["options"], fingerprint=job["fingerprint"],
                        progress=on_trial)
    summary = finish(out, result, job, checkpoint, history_written=history.lines)
    summary["new_trials"] = new_trials
    return {"result": result, "summary": summary}


def finish(out: str, result: Any, job: dict, checkpoint: str, *, history_written: int = 0) -> dict:
    """Write history.jsonl (unless the run already wrote all ``history_written`` trials of it, one by one), the
    plots and (unless interrupted) best.onnx for ``result``; the JSON-able summary."""
    from graphmill.search import write_history_jsonl

    history = list(result.history)
    files = ["checkpoint.json"] if os.path.exists(checkpoint) else []
    if history_written != len(history) or not os.path.exists(os.path.join(out, "history.jsonl")):
        write_history_jsonl(os.path.join(out, "history.jsonl"), history)
    files.append("history.jsonl")
    best = result.best
    if history:
        plot_best_so_far(os.path.join(out, "best_so_far.png"), history)
        files.append("best_so_far.png")
        if plot_pareto(os.path.join(out, "pareto.png"), result):
            files.append("pareto.png")
    if best is not None and not result.interrupted:
        graph = best_model(job["evaluate"], job["space_name"], best.config, job["seed"])
        if graph is not None:
            from graphmill.frontend import save

            save(graph, os.path.join(out, "best.onnx"))
            files.append("best.onnx")
    # a space file by its path (it said "file": which one was searched?; an outside check)
    space = job["space_spec"] if job["space_name"] == "file" else job["space_name"]
    return {"out": out, "checkpoint": checkpoint, "space": space, "strategy": job["strategy"],
            "trials": len(history), "failed": sum(1 for t in history if t.status != "ok"),
            "interrupted": result.interrupted, "exhausted": result.exhausted, "files": files,
            "best": best.to_json() if best is not None else None}
