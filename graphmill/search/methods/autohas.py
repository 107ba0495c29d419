"""AutoHAS (Dong et al., "AutoHAS: Efficient Hyperparameter and Architecture Search"): one joint search of a
network's architecture and its training hyper-parameters with shared weights, at about the cost of one training.

**Task**: scikit-learn's digits (``graphmill.search.oneshot.TASK``: 1,797 8x8 images upsampled bilinearly to the
child's resolution; 1,138 training images, 300 validation images that score candidates, 359 test images that
only the final report reads).

**Joint space** (``joint_space``): ``{"arch": <the BigNAS supernet's children>, "hp": {"lr", "weight_decay",
"augment"}}``. ``arch`` is ``SupernetSpec.space()`` of ``graphmill.search.oneshot`` (``space=digits``:
``DIGITS_SPEC``, resolution 8/12/16 x per stage depth, width, kernel, expansion; ``space=tiny`` for tests); the
hyper-parameters are candidate lists, as AutoHAS discretizes them: the peak learning rate of SGD with momentum
0.9 (default 0.01, 0.03, 0.1, 0.3), the weight decay (L2 on the child's convolution and classifier weights;
0, 1e-4, 5e-4, 2e-3) and RandAugment's magnitude (``graphmill.backends.torch.training.rand_augment``; 0, 5, 10,
20 of 30).

**Search** (``budget`` = controller steps, default 120): the supernet's shared weights W (BigNAS initialization)
and a controller of independent categorical distributions (``JointController``: one ``Controller`` for the
architecture, one for the hyper-parameters, REINFORCE with moving-average baselines). During the first
``warmup`` fraction of the steps the controller samples uniformly and does not learn; W trains. Then each step
samples (architecture, hyper-parameters); ``temp_steps`` SGD steps of that child with those hyper-parameters
(learning rate, weight decay, augmentation of the batch) from a copy of W give the temporary weights W*; one
validation batch (``val_batch`` images, BatchNormalization on the batch's statistics) scores them: the
architecture by W*'s accuracy (AutoHAS's reward), the hyper-parameters by the validation loss their update
removed, ``loss(W) - loss(W*)`` on the same batch and child (a departure, for variance: with one reward for
both, the architectures' spread of accuracy drowned the hyper-parameters' one-step effect and the controller
ended on learning rate 0.01 in a 250-step run). What W learns is ``update``: ``sandwich`` (default) undoes W*
and steps W itself, on the largest child and a uniformly drawn child on alternate steps (``largest_every``
2: the largest every k-th step), with the sampled hyper-parameters (so W does not train most what the
controller already prefers; the warm-up steps are these steps alone, unscored); ``sampled`` keeps W <- W*
(AutoHAS as published: scoring adds two validation forwards to the training; its picks had 8-pixel inputs, the
children the controller sampled early and W then trained most). The search's learning rate is each sample's own, constant (candidates are compared at their own value
all along).

**Final pick** (``_Run._screen``): the controller's most probable configuration, or with ``screen`` N (default
16) the architecture of best validation accuracy with the shared weights among it and N drawn from the
controller, with the most probable hyper-parameters; trained for ``final_steps`` SGD steps with its
hyper-parameters (cosine schedule from its learning rate) from the shared weights (``final_init=inherit``, the
default: the weights the search trained are the point of sharing them) or from scratch (``final_init=scratch``:
the protocol of a baseline candidate); BatchNormalization recalibrated, reported on the test set, written as
``best.onnx`` (standard ONNX ops).

**Outputs** in ``out``: ``checkpoint.pt`` (shared weights, optimizer, controller, RNGs, history; written
atomically after every ``log_every`` steps, during the search and the final training; rerunning the same
command resumes from it, other options are refused naming the first that differs), ``history.jsonl`` (one
line per controller step: configuration, reward and loss gain (null on unscored warm-up steps), ``loss`` of the
sample's temporary update, ``trained``/``shared_loss``/``shared_diverged`` of the shared weights' own step),
``autohas.png`` (reward over steps, the warm-up shaded; probabilities of the hyper-parameter candidates, the
chosen ones marked), ``best.onnx`` and ``report.json`` (with ``screened``: each screened child's validation
accuracy on the shared weights).

**Workers and executors**: the shared-weight loop is one sequential process (each step starts from the last
one's weights), so ``workers`` is the number of torch threads it uses; ``executor`` ``None``/``"inprocess"``/
``"local"`` run it in this process, ``"ray"`` runs the whole loop as one Ray task (``graphmill.search``'s Ray
executor: a local Ray, or ``ray_address``; the folder must be on a file system the task sees; progress lines
are not streamed back from the task). ``accel``: when given, the report adds the pick's simulated latency on
that accelerator (the reward is accuracy alone).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from graphmill.search.methods import parse_options
from graphmill.search.methods._autohas_train import (UPDATES, ChildTrainer, Controller, JointController, search_step,
                                                      train_alone)
from graphmill.search.space import Choice, Space
from graphmill.util.errors import SearchWarning, UserInputError
from graphmill.util.files import CHECKPOINT_LIMIT, check_out_folder, parse_json, read_user_file
from graphmill.util.interrupts import INTERRUPTS, DeferredInterrupt, is_interrupt
from graphmill.util.suggest import did_you_mean

METHOD = "autohas"
DEFAULT_BUDGET = 120
SPACES = ("digits", "tiny")
HP_DEFAULTS = {"lr": (0.01, 0.03, 0.1, 0.3), "weight_decay": (0.0, 1e-4, 5e-4, 2e-3), "augment": (0, 5, 10, 20)}

#: option -> default (its type is the option's: ``--option KEY=VALUE`` values are parsed to it)
OPTIONS: dict[str, Any] = {
    "space": "digits",          # the supernet: digits (DIGITS_SPEC) | tiny (TINY_SPEC, for tests)
    "batch": 32,                # training images per SGD step
    "val_batch": 32,            # validation images per reward
    "temp_steps": 1,            # SGD steps of the temporary update
    "warmup": 0.5,             # fraction of the steps with a uniform, non-learning controller
    "update": "sandwich",       # what the shared weights learn: sandwich (their own step) | sampled (W <- W*)
    "largest_every": 2,         # sandwich: the shared weights' step trains the largest child every k-th step
    "controller_lr": 0.05,
    "entropy": 0.001,
    "baseline_decay": 0.95,
    "log_every": 25,            # steps per progress line and checkpoint
    "screen": 16,               # architectures sampled from the controller and measured before the pick
    "final_steps": 100,         # SGD steps of the final pick's training
    "final_init": "inherit",    # inherit (from the shared weights) | scratch
    "lr": "0.01,0.03,0.1,0.3",  # candidate peak learning rates (SGD, momentum 0.9)
    "weight_decay": "0,0.0001,0.0005,0.002",
    "augment": "0,5,10,20",     # candidate RandAugment magnitudes (0 .. 30)
}
CHOICES = {"space": SPACES, "final_init": ("inherit", "scratch"), "update": UPDATES}
#: what a run writes into its folder, by role
FILES = {"checkpoint": "checkpoint.pt", "history": "history.jsonl", "plot": "autohas.png", "model": "best.onnx",
         "report": "report.json"}
ZERO_OK = ("screen",)  # integer options that may be 0
SCREEN_CALIBRATE = 128  # training images that re-estimate a screened child's BatchNormalization statistics
MAX_SCREEN = 1024  # children screened on the shared weights (each on every validation image): 10^5 ran for hours


def _candidates(key: str, vals: list, text: Any) -> tuple:
    """A hyper-parameter's candidate list (parsed by ``parse_options``) range-checked, as a tuple."""
    floor = "> 0 (learning rates)" if key == "lr" else ">= 0"  # one bound per option (an outside check)
    if any(v < 0 or (key == "lr" and v == 0) for v in vals) or len(set(vals)) != len(vals):
        raise UserInputError(f"--option {key}={text!r}: expected distinct finite numbers {floor}")
    if key == "augment" and max(vals) > 30:
        raise UserInputError(f"--option augment={text!r}: RandAugment magnitudes are 0 .. 30")
    return tuple(int(v) if key == "augment" and v == int(v) else v for v in vals)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options with defaults filled in and values parsed; a ``UserInputError`` for an unknown key (naming
    the nearest valid one) or a bad value."""
    from graphmill.backends.torch.training.runner import MAX_BATCH

    out = parse_options(options, OPTIONS, "AutoHAS", lists={key: float for key in HP_DEFAULTS})
    for key, default in OPTIONS.items():
        v = out[key]
        if key in HP_DEFAULTS:
            out[key] = _candidates(key, v, options.get(key, default))
            continue
        if isinstance(default, int) and v < (0 if key in ZERO_OK else 1):
            raise UserInputError(f"--option {key}={v!r}: must be >= {0 if key in ZERO_OK else 1}")
        if isinstance(default, float) and (v < 0 or (key in ("warmup", "baseline_decay") and v >= 1)):
            raise UserInputError(f"--option {key}={v!r}: must be a finite number >= 0"
                                 + (" and < 1" if key in ("warmup", "baseline_decay") else ""))
        if key in ("batch", "val_batch") and v > MAX_BATCH or key == "screen" and v > MAX_SCREEN:
            raise UserInputError(f"--option {key}={v!r}: at most {MAX_BATCH if key != 'screen' else MAX_SCREEN:,}")
        if key in CHOICES and v not in CHOICES[key]:
            raise UserInputError(f"--option {key}={v!r}: use one of {', '.join(CHOICES[key])}"
                                 f"{did_you_mean(str(v), CHOICES[key])}")
    return out


def supernet_spec(name: str):
    from graphmill.search.oneshot import DIGITS_SPEC, TINY_SPEC

    return {"digits": DIGITS_SPEC, "tiny": TINY_SPEC}[name]


def joint_space(spec=None, *, lr=HP_DEFAULTS["lr"], weight_decay=HP_DEFAULTS["weight_decay"],
                augment=HP_DEFAULTS["augment"]) -> Space:
    """Architecture (the supernet's children) x hyper-parameters, as one ``graphmill.search.Space``:
    ``{"arch": {...}, "hp": {"lr", "weight_decay", "augment"}}``; the random and TPE baselines search it too."""
    spec = spec if spec is not None else supernet_spec("digits")
    return Space({"arch": spec.space(), "hp": Space({"lr": Choice(list(lr)), "weight_decay": Choice(list(weight_decay)),
                                                     "augment": Choice(list(augment))})})


@dataclass
class CandidateEvaluator:
    """The baselines' evaluator (``graphmill.search.run``): a joint configuration trained alone from scratch
    for ``steps`` SGD steps (the final pick's protocol); reward = validation accuracy, the test accuracy, the
    images trained on and the CPU seconds as metrics. Picklable (process-pool and Ray workers)."""

    space: str = "digits"
    steps: int = 150
    batch: int = 32
    seed: int = 0

    def __call__(self, config: dict) -> dict:
        import torch

        torch.set_num_threads(1)
        m = train_alone(supernet_spec(self.space), config["arch"], config["hp"], steps=self.steps,
                        batch=self.batch, seed=self.seed)
        return {"reward": m["val_accuracy"], **m}


# -- run --------------------------------------------------------------------------------------------------------

def _check_run(out: str, budget: int | None, seed: int, workers: int, executor: str | None,
               ray_address: str | None, accel: str | None, options: Mapping[str, Any]) -> tuple[dict, int, Any]:
    opts = check_options(options)
    if budget is None:
        budget = DEFAULT_BUDGET
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UserInputError(f"--budget {budget!r}: AutoHAS's budget is controller steps, a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserInputError(f"--seed {seed!r}: must be an integer >= 0")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserInputError(f"--workers {workers!r}: must be a whole number >= 1")
    if executor not in (None, "inprocess", "local", "ray"):
        raise UserInputError(f"--executor {executor!r}: unknown{did_you_mean(str(executor), ('local', 'ray'))}; "
                             "use local or ray")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserInputError("--executor ray needs ray, an optional extra: pip install 'ray[default]'") from None
    check_out_folder(out, "search --method autohas", "checkpoint.pt, history.jsonl, report.json, best.onnx and "
                                                      "autohas.png")
    accel_cfg = None
    if accel is not None:
        from graphmill.backends.simulator.config import load_accel

        accel_cfg = load_accel(accel)
    return opts, budget, accel_cfg


def run(out: str, *, budget: int | None, seed: int, workers: int, executor: str | None,
        ray_address: str | None, accel: str | None, options: dict[str, str],
        progress: Callable[[str], None] | None) -> dict:
    """Run (or resume) AutoHAS into the folder ``out`` (module docstring); its JSON-able summary.

    Everything is checked before anything is written. ``budget``: controller steps. ``progress(line)`` receives a
    line per ``log_every`` steps (search and final training). Ctrl-C stops between steps: the last checkpoint
    stands (the same call resumes from it) and the summary says ``interrupted: True``.
    """
    out = os.fspath(out)
    opts, budget, accel_cfg = _check_run(out, budget, seed, workers, executor, ray_address, accel, options)
    if executor == "ray":
        return _run_on_ray(out, budget=budget, seed=seed, workers=workers, ray_address=ray_address, accel=accel,
                           options=dict(options))
    return _Run(out, opts, budget, seed, workers, accel_cfg, progress).go()


def _steps_recorded(out: str) -> int:
    """The controller steps ``history.jsonl`` holds (it follows the checkpoint): what a run on Ray, whose
    state lives in its task, left in the folder."""
    history = os.path.join(out, FILES["history"])
    if not os.path.exists(history):
        return 0
    with open(history) as f:
        return sum(1 for line in f if line.strip())


@dataclass
class _RayJob:
    """The whole loop as one evaluation of ``graphmill.search``'s Ray executor (picklable)."""

    out: str
    budget: int
    seed: int
    workers: int
    accel: str | None
    options: dict

    def __call__(self, _config: dict) -> dict:
        return run(self.out, budget=self.budget, seed=self.seed, workers=self.workers, executor=None,
                   ray_address=None, accel=self.accel, options=self.options, progress=None)


def _run_on_ray(out: str, *, budget: int, seed: int, workers: int, ray_address: str | None, accel: str | None,
                options: dict) -> dict:
    from graphmill.search.executors import make

    ex = make("ray", _RayJob(os.path.abspath(out), budget, seed, workers, accel, options), workers=1, timeout=None,
              ray_address=ray_address)
    before = _steps_recorded(out)
    try:
        ex.submit(0, {})
        finished = ex.wait(None)
    except KeyboardInterrupt:  # the task is stopped where it stood: what its checkpoint left, read from the folder
        ex.close()  # (it said files [] beside an existing checkpoint, trials null: an outside check)
        ckpt = os.path.join(out, FILES["checkpoint"])
        files = [n for n in FILES.values() if os.path.exists(os.path.join(out, n))]
        trials = _steps_recorded(out)
        return {"method": METHOD, "task": _task(), "out": out, "files": files, "interrupted": True,
                "checkpoint": ckpt if os.path.exists(ckpt) else None, "best": None, "current_pick": None,
                "trials": trials, "new_trials": trials - before, "budget": budget, "phase": None}
    ex.close()
    status, value, _ = finished[0][1]
    if status != "ok":
        raise UserInputError(f"AutoHAS as a Ray task failed: {value}")
    return value


#: the compute tallies a run keeps (images seen, CPU seconds, per phase)
COMPUTE_KEYS = ("search_train_images", "search_val_images", "final_train_images", "search_cpu_seconds",
                "final_cpu_seconds")


def _damage(state: dict) -> str:
    """What is wrong with an AutoHAS checkpoint's fields ('' when nothing): each of the types ``_save`` writes
    (state dicts, generator states, JSON text, a step within the run's budget, a phase)."""
    from graphmill.util.torch_state import is_count, is_generator_state

    def json_of(kind: type, inside=lambda v: True):
        def ok(x) -> bool:
            try:
                return isinstance(x, str) and isinstance(json.loads(x), kind) and inside(json.loads(x))
            except ValueError:
                return False
        return ok

    def rows(v) -> bool:  # a list of objects ("[1]" was a TypeError at the first use; a review)
        return all(isinstance(r, dict) for r in v)

    def tally(v) -> bool:  # every count the run adds to
        return all(isinstance(v.get(k), (int, float)) and not isinstance(v.get(k), bool) for k in COMPUTE_KEYS)

    def picked(v) -> bool:
        return v is None or (isinstance(v.get("arch"), dict) and isinstance(v.get("hp"), dict))

    checks = (("config", lambda x: isinstance(x, dict)), ("model", lambda x: isinstance(x, dict)),
              ("optimizer", lambda x: isinstance(x, dict)), ("generator", is_generator_state),
              ("rng", is_generator_state),
              ("controller", json_of(dict)), ("history", json_of(list, rows)), ("probs", json_of(list, rows)),
              ("compute", json_of(dict, tally)), ("phase", lambda x: x in ("search", "final", "done")),
              ("step", is_count))
    for key, ok in checks:
        if key not in state:
            return f"no {key}"
        if not ok(state[key]):
            return f"{key} is not what graphmill writes"
    budget = state["config"].get("budget")
    if isinstance(budget, int) and state["step"] > budget:
        return f"step {state['step']} of a search of {budget} steps"
    if isinstance(budget, int) and state["phase"] != "search" and state["step"] != budget:
        # the save writes the final phase once the search is over: a phase 'final' at step 5 of 10 skipped the
        # rest of the search and reported it finished (a review)
        return f"phase {state['phase']!r} at search step {state['step']} of {budget}"
    for key, ok in (("pick", json_of((dict, type(None)), picked)), ("screened", json_of(list, rows))):
        if key in state and not ok(state[key]):
            return f"{key} is not what graphmill writes"
    if state.get("final") is not None and not isinstance(state["final"], dict):
        return "final is not what graphmill writes"
    return ""


class _Run:
    """One AutoHAS run into a folder: state, checkpoint, the two phases, outputs."""

    def __init__(self, out: str, opts: dict, budget: int, seed: int, workers: int, accel_cfg: Any,
                 progress: Callable[[str], None] | None) -> None:
        self.out, self.opts, self.budget, self.seed, self.workers = out, opts, budget, seed, workers
        self.accel_cfg, self.progress = accel_cfg, progress
        self.stop: DeferredInterrupt | None = None  # set while run() trains
        self.steps_before = 0  # the steps a resumed run's checkpoint held: `new_trials` counts the others
        self.spec = supernet_spec(opts["space"])
        self.space = joint_space(self.spec, lr=opts["lr"], weight_decay=opts["weight_decay"], augment=opts["augment"])
        self.files = {role: os.path.join(out, name) for role, name in FILES.items()}
        self.config = {"method": METHOD, "budget": budget, "seed": seed,
                       **{k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}}
        self.config = {k: json.dumps(v) if isinstance(v, list) else v for k, v in self.config.items()}
        # the report's latency is on it: a finished run rerun with another --accel (or none) returned the first
        # accelerator's latency without a word (an outside check); a checkpoint older than this key resumes (_load)
        text = json.dumps(accel_cfg.to_dict(), sort_keys=True) if accel_cfg is not None else ""
        self.config["accel"] = (f"{accel_cfg.name} ({hashlib.sha1(text.encode()).hexdigest()[:10]})"
                                if accel_cfg is not None else None)

    # -- state
    def _load(self):
        from graphmill.backends.torch.training.loop import check_same_config, load_checkpoint

        if not os.path.exists(self.files["checkpoint"]):
            return None
        state = load_checkpoint(self.files["checkpoint"])
        why = _damage(state)
        if why:  # a config of None was a TypeError traceback (a review); so would any other field be, later
            raise UserInputError(f"{self.files['checkpoint']}: a damaged AutoHAS checkpoint ({why}); remove "
                                 f"{self.out} to start afresh")
        # a checkpoint written before the accelerator was recorded cannot say which it had: its runs resume
        check_same_config(self.files["checkpoint"], state["config"], self.config, recorded_since=("accel",))
        return state

    def go(self) -> dict:
        import torch

        from graphmill.search.oneshot import init_weights
        from graphmill.search.oneshot.torchnet import SupernetModule
        from graphmill.search.oneshot.train import digits_split

        from graphmill.search.methods._autohas_train import sgd

        state = self._load()  # a foreign or mismatched checkpoint is refused before anything is written
        threads = torch.get_num_threads()
        torch.set_num_threads(self.workers)
        try:
            if state is not None and state.get("phase") == "done" and os.path.exists(self.files["report"]):
                try:  # a finished run: its report, read as any JSON graphmill reads back (parse_json)
                    done = parse_json(read_user_file(self.files["report"], CHECKPOINT_LIMIT, "an AutoHAS report"))
                except (OSError, ValueError) as e:
                    raise UserInputError(f"{self.files['report']}: cannot read the finished run's report ({e}); "
                                         f"remove {self.out} to start afresh") from None
                self._say(f"[autohas] nothing run: {self.files['checkpoint']} holds the finished run ({done['trials']} "
                          f"step(s) of --budget {self.budget}); its result is {self.files['report']}")
                return self._summary(done, False)
            torch.manual_seed(self.seed)
            self.data = {r: digits_split(r, self.spec.in_channels) for r in self.spec.resolutions}
            self.module = SupernetModule(self.spec, init_weights(self.spec, self.seed))
            self.module.train()
            self.optimizer = sgd(self.module)
            self.generator = torch.Generator().manual_seed(self.seed)
            self.controller = JointController(self.space, seed=self.seed, lr=self.opts["controller_lr"],
                                         entropy=self.opts["entropy"], baseline_decay=self.opts["baseline_decay"])
            self.history: list[dict] = []
            self.probs: list[dict] = []
            self.step_no = 0
            self.compute = {k: 0.0 if k.endswith("seconds") else 0 for k in COMPUTE_KEYS}
            self.phase, self.final_state = "search", None
            self.pick: dict | None = None
            self.screened: list[dict] = []
            if state is not None:
                self._restore(state)
                self.steps_before = len(self.history)
                # the next line was a later step's, with nothing saying the run went on from a checkpoint
                self._say(f"[autohas] resuming from {self.files['checkpoint']} at search step "
                          f"{self.step_no}/{self.budget}" + (f", {self.phase} phase" if self.phase != "search" else ""))
            os.makedirs(self.out, exist_ok=True)
            if state is None:  # step 0: a Ctrl-C before the first log_every steps still leaves a checkpoint to
                self._save()   # resume from (it consumes no random number: the run is unchanged)
            try:  # Ctrl-C: the step under way finishes and is checkpointed (the history's trials are all held)
                with DeferredInterrupt() as self.stop:
                    if self.phase == "search":
                        self._search()
                    self._final()
                    # the training is over: a Ctrl-C now waits for its files (it raised out of the writing, and
                    # the command printed no --json)
                    report = self._finish()
            except INTERRUPTS as e:
                if not is_interrupt(e):
                    raise
                self._write_partial()
                return self._summary(None, True)
            return self._summary(report, False)
        finally:
            torch.set_num_threads(threads)

    def _restore(self, state: dict) -> None:
        import torch

        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["rng"])
            self.controller.load_state_dict(json.loads(state["controller"]))
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise UserInputError(f"{self.files['checkpoint']}: does not fit this AutoHAS run "
                                 f"({str(e).splitlines()[0][:200] if str(e) else type(e).__name__}); remove "
                                 f"{self.out} to start afresh") from None
        self.history = json.loads(state["history"])
        self.probs = json.loads(state["probs"])
        self.compute = json.loads(state["compute"])
        self.step_no = int(state["step"])
        self.phase = state["phase"]
        self.final_state = state.get("final")
        self.pick = json.loads(state.get("pick", "null"))
        self.screened = json.loads(state.get("screened", "[]"))

    def _save(self, final: dict | None = None) -> None:
        import torch

        from graphmill.backends.torch.training.loop import save_checkpoint

        save_checkpoint(self.files["checkpoint"], {
            "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(), "rng": torch.get_rng_state(),
            "controller": json.dumps(self.controller.state_dict()), "history": json.dumps(self.history),
            "probs": json.dumps(self.probs), "compute": json.dumps(self.compute), "step": self.step_no,
            "phase": self.phase, "final": final, "config": self.config,
            "pick": json.dumps(self.pick), "screened": json.dumps(self.screened)})
        if self.history:  # history.jsonl follows the checkpoint: a run killed mid-way left none (an outside check)
            self._write_history()

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    # -- phase 1: the shared-weight search
    def _search(self) -> None:
        o = self.opts
        warm = int(round(o["warmup"] * self.budget))
        t_start, done_at_start = time.perf_counter(), self.step_no
        if self.step_no == 0 and not self.probs:  # the starting point of the plot's probability curves
            self._snapshot()
        while self.step_no < self.budget:
            t0 = time.process_time()
            row = search_step(self.module, self.optimizer, self.controller, self.spec, self.data, self.generator,
                              batch=o["batch"], val_batch=o["val_batch"], temp_steps=o["temp_steps"],
                              learn=self.step_no >= warm, update=o["update"], step=self.step_no,
                              largest_every=o["largest_every"])
            self.compute["search_cpu_seconds"] += time.process_time() - t0
            self.compute["search_train_images"] += o["batch"] * row["train_steps"]
            self.compute["search_val_images"] += o["val_batch"] * row["val_forwards"]  # forwards of W and of W*
            self.step_no += 1
            self.history.append({"step": self.step_no, "config": row["config"], "reward": row["reward"],
                                 "gain": row["gain"], "loss": row["loss"], "diverged": row["diverged"],
                                 "learning": self.step_no > warm, "trained": row["trained"],
                                 **{k: row[k] for k in ("shared_loss", "shared_diverged") if k in row}})
            if self.step_no % o["log_every"] == 0 or self.step_no == self.budget:
                self._snapshot()
                if self.step_no == self.budget:
                    self.phase = "final"
                self._save()
                rate = (self.step_no - done_at_start) / max(time.perf_counter() - t_start, 1e-9)
                self._say(self._search_line(rate))
            elif self.stop is not None and self.stop.requested:
                self._save()
            if self.stop is not None and self.stop.requested:
                raise KeyboardInterrupt

    def _snapshot(self) -> None:
        self.probs.append({"step": self.step_no,
                           "probs": {path: p.tolist() for (path, _), p in
                                     zip(self.controller.decisions, self.controller.probs())}})

    def _search_line(self, rate: float) -> str:
        recent = _scored(self.history[-self.opts["log_every"]:])
        pick = self.controller.argmax()
        hp = pick["hp"]
        eta = (self.budget - self.step_no) / rate if rate > 0 else math.inf
        speed = f"{rate:.2f} steps/s  ETA {_fmt(eta)}"
        if not recent:  # the warm-up: nothing scored, the controller uniform (its "pick" means nothing yet)
            return f"[autohas] step {self.step_no}/{self.budget}  warm-up (shared weights only, not scored)  {speed}"
        return (f"[autohas] step {self.step_no}/{self.budget}  reward {np.mean(recent):.4f} (last {len(recent)})  "
                f"pick lr {hp['lr']:g} wd {hp['weight_decay']:g} augment {hp['augment']:g} "
                f"res {pick['arch']['resolution']}  p(pick) {self.controller.probability(pick):.3g}  {speed}")

    # -- phase 2: the final pick trained
    def _screen(self) -> tuple[dict, list[dict]]:
        """The pick: the controller's most probable configuration, or, with ``screen`` N > 0, the architecture of
        best validation accuracy (all validation images, the shared weights, BatchNormalization recalibrated on
        ``SCREEN_CALIBRATE`` training images) among that one and N drawn from the controller, with the most
        probable hyper-parameters. Why: the controller's argmax is decided by rewards on 32-image batches after
        one update, and a run whose controller ends on a poor child (8-pixel inputs) has nothing to catch it;
        the shared weights measured on the whole validation set, forwards only, are the cheapest second
        opinion (hyper-parameters act through training, so the shared weights cannot rank them)."""
        from graphmill.search.oneshot.train import accuracy, calibrate

        pick = self.controller.argmax()
        if self.opts["screen"] == 0:
            return pick, []
        archs = [pick["arch"]]
        for _ in range(self.opts["screen"]):
            arch = self.controller.sample()[0]["arch"]
            if arch not in archs:
                archs.append(arch)
        rows = []
        for arch in archs:
            d = self.data[arch["resolution"]]
            calibrate(self.module, arch, d, SCREEN_CALIBRATE)
            rows.append({"config": arch, "shared_val_accuracy": accuracy(self.module, arch, d.x_val, d.y_val)})
        best = max(range(len(rows)), key=lambda i: (rows[i]["shared_val_accuracy"], -i))
        return {"arch": archs[best], "hp": pick["hp"]}, rows

    def _final(self) -> None:
        import torch

        from graphmill.search.oneshot import init_weights

        o = self.opts
        if self.pick is None:
            t0 = time.process_time()
            self.pick, self.screened = self._screen()
            self.compute["final_cpu_seconds"] += time.process_time() - t0
            self.compute["screen_val_images"] = len(self.screened) * len(self.data[self.spec.resolutions[0]].y_val)
            self.compute["screen_calibration_images"] = len(self.screened) * SCREEN_CALIBRATE
            if self.screened:
                top = max(r["shared_val_accuracy"] for r in self.screened)
                changed = "" if self.pick["arch"] == self.controller.argmax()["arch"] else \
                    ", not the controller's most probable"
                self._say(f"[autohas] screened {len(self.screened)} children on the shared weights: pick res "
                          f"{self.pick['arch']['resolution']} (validation {top:.4f}{changed})")
        pick = self.pick
        weights = init_weights(self.spec, self.seed) if o["final_init"] == "scratch" else self.module.weights()
        self.trainer = ChildTrainer(self.spec, pick["arch"], pick["hp"], weights, steps=o["final_steps"],
                                    batch=o["batch"], seed=self.seed, data=self.data)
        if self.final_state is not None:
            try:  # the final training's own state: a damaged one was a KeyError traceback (a review)
                self.trainer.load_state_dict(self.final_state)
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                raise UserInputError(f"{self.files['checkpoint']}: a damaged AutoHAS checkpoint (its final "
                                     f"training's state: {type(e).__name__} {str(e)[:100]}); remove {self.out} to "
                                     "start afresh") from None
        elif o["final_init"] == "scratch":
            torch.manual_seed(self.seed)  # RandAugment's draws: what a baseline candidate with this seed sees
        t_start, done_at_start = time.perf_counter(), self.trainer.step_no
        tr = self.trainer
        losses: list[float] = []
        while tr.step_no < o["final_steps"]:
            t0 = time.process_time()
            losses.append(tr.step())
            self.compute["final_cpu_seconds"] += time.process_time() - t0
            self.compute["final_train_images"] += o["batch"]
            if tr.step_no % o["log_every"] == 0 or tr.step_no == o["final_steps"]:
                self._save(final=tr.state_dict())
                rate = (tr.step_no - done_at_start) / max(time.perf_counter() - t_start, 1e-9)
                eta = (o["final_steps"] - tr.step_no) / rate if rate > 0 else math.inf
                # the objective trained: on augmented batches, with the pick's weight decay (3.08 beside 95%
                # test accuracy read as a plain cross-entropy: an outside check)
                self._say(f"[autohas] final {tr.step_no}/{o['final_steps']}  loss {np.mean(losses):.4f} "
                          "(cross-entropy + weight decay, augmented)  "
                          f"{rate:.2f} steps/s  ETA {_fmt(eta)}")
                losses = []
            elif self.stop is not None and self.stop.requested:
                self._save(final=tr.state_dict())
            if self.stop is not None and self.stop.requested:
                raise KeyboardInterrupt

    # -- outputs
    def _write_history(self) -> None:
        from graphmill.util.files import atomic_write_text

        atomic_write_text(self.files["history"], "".join(json.dumps(h) + "\n" for h in self.history))

    def _write_partial(self) -> None:
        if self.history:
            self._write_history()
            plot(self.files["plot"], self.history, self.probs, self.space, None)

    def _finish(self) -> dict:
        from graphmill.frontend import save
        from graphmill.search.evaluators.cost import cost_metrics
        from graphmill.util.files import write_json

        t0 = time.process_time()
        acc = self.trainer.evaluate()
        graph = self.trainer.graph()
        self.compute["final_cpu_seconds"] += time.process_time() - t0
        costs = cost_metrics(graph)
        pick = self.pick
        best = {"config": pick["arch"], "hyperparameters": pick["hp"], "accuracy": acc["test_accuracy"],
                "val_accuracy": acc["val_accuracy"], "macs": int(costs["macs"]), "params": int(costs["params"]),
                "probability": self.controller.probability(pick)}
        if self.accel_cfg is not None:
            from graphmill.search.evaluators.latency import simulated_latency

            best["latency_ms"] = float(simulated_latency(graph, self.accel_cfg)["latency"])
        self._write_history()
        plot(self.files["plot"], self.history, self.probs, self.space, pick)
        save(graph, self.files["model"])
        c = dict(self.compute)
        c["total_train_images"] = c["search_train_images"] + c["final_train_images"]
        c["total_cpu_seconds"] = round(c["search_cpu_seconds"] + c["final_cpu_seconds"], 3)
        report = {"method": METHOD, "task": _task(), "budget": self.budget, "seed": self.seed,
                  "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.opts.items()},
                  "best": best, "compute": c, "trials": len(self.history),
                  "screened": self.screened,
                  "controller": {path: dict(zip([str(v) for v in p.values], map(float, pr)))
                                 for (path, p), pr in zip(self.controller.decisions, self.controller.probs())},
                  "mean_reward_last_log": _mean_or_none(_scored(self.history[-self.opts["log_every"]:]))}
        report["shared_diverged"] = _warn_if_shared_weights_diverged(self.history)
        report["pick_finite"] = _warn_if_pick_not_finite(graph)
        write_json(self.files["report"], report)
        self.phase = "done"
        self._save(final=self.trainer.state_dict())
        return report

    def _summary(self, report: dict | None, interrupted: bool) -> dict:
        files = [os.path.basename(p) for p in self.files.values() if os.path.exists(p)]
        if report is None:  # interrupted: no best yet (the CLI printed the untrained pick's probability as
            pick_now = None   # "best"); the controller's current pick, not trained, apart
            if hasattr(self, "controller"):  # in the pick's training: the screened pick being trained
                pick = self.pick if getattr(self, "pick", None) is not None else self.controller.argmax()
                pick_now = {"config": pick["arch"], "hyperparameters": pick["hp"],
                            "probability": self.controller.probability(pick)}
            return {"method": METHOD, "task": _task(), "out": self.out, "files": files, "interrupted": interrupted,
                    "checkpoint": self.files["checkpoint"] if os.path.exists(self.files["checkpoint"]) else None,
                    "best": None, "current_pick": pick_now, "trials": len(getattr(self, "history", [])),
                    "new_trials": len(getattr(self, "history", [])) - self.steps_before,
                    "budget": self.budget, "phase": getattr(self, "phase", None)}
        new = len(self.history) - self.steps_before if hasattr(self, "history") else 0  # 0: a finished run rerun
        return {"method": METHOD, "task": report["task"], "out": self.out, "files": files, "interrupted": False,
                "checkpoint": self.files["checkpoint"], "best": report["best"], "trials": report["trials"],
                "new_trials": new, "budget": report["budget"], "compute": report["compute"]}


def _warn_if_shared_weights_diverged(history: list[dict]) -> int:
    """How many of the shared weights' own steps diverged (each undone); more than half: a ``SearchWarning``, since
    the weights every child slices then hardly trained and the pick means little. A candidate learning rate of
    1e3 made 51 of 60 steps diverge and the run reported its pick at chance without a word (an outside check)."""
    shared = [row for row in history if "shared_diverged" in row]
    diverged = sum(bool(row["shared_diverged"]) for row in shared)
    if shared and diverged > len(shared) / 2:
        warnings.warn(f"autohas: {diverged} of {len(shared)} steps of the shared weights diverged and were undone, "
                      "so they hardly trained and the pick is not to be trusted; a learning-rate candidate too "
                      "large? (--option lr=...)", SearchWarning, stacklevel=2)
    return diverged


def _warn_if_pick_not_finite(graph) -> bool:
    """Whether the pick's weights are all finite; if not, a ``SearchWarning``: a step that left the shared weights
    huge but finite is no divergence to the step's check, and the pick's training then ran to NaN, writing a
    best.onnx of NaN weights without a word (a review: lr candidates up to 1e4)."""
    arrays = (v.const.numpy() for v in graph.initializers.values() if v.const is not None)
    finite = all(np.isfinite(a).all() for a in arrays if np.issubdtype(a.dtype, np.floating))
    if not finite:
        warnings.warn("autohas: the pick's weights are not finite (its training diverged), so best.onnx computes "
                      "nothing useful; a learning-rate candidate too large? (--option lr=...)", SearchWarning,
                      stacklevel=2)
    return finite


def _scored(history: list[dict]) -> list[float]:
    """The rewards of the steps that were scored (``update="sandwich"`` scores none during the warm-up)."""
    return [h["reward"] for h in history if h["reward"] is not None]


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _task() -> str:
    from graphmill.search.oneshot import TASK

    return TASK


def _fmt(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def plot(path: str, history: list[dict], probs: list[dict], space: Space, pick: dict | None) -> None:
    """autohas.png: the controller's reward over steps (each step and a moving average) and, per
    hyper-parameter, the probability of each candidate over steps (the chosen candidate drawn thick).

    A short run has few points (a run shorter than ``log_every`` has one probability snapshot): they are drawn
    as markers, since a line through one point draws nothing; a panel with nothing to draw says so."""
    from graphmill.util.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    ax = axes[0][0]
    scored = [h for h in history if h["reward"] is not None]
    steps = [h["step"] for h in scored]
    rewards = [h["reward"] for h in scored]
    few = len(rewards) < 100  # markers big enough to see one point; a long run's cloud stays light
    ax.scatter(steps, rewards, s=16 if few else 3, alpha=0.8 if few else 0.25,
               label="reward (validation batch accuracy)")
    w = max(1, min(50, len(rewards) // 10 or 1))
    if w > 1:
        ma = np.convolve(rewards, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], ma, color="C3", label=f"moving average ({w})")
    learn = [h["step"] for h in history if h.get("learning")]
    if learn:
        ax.axvline(learn[0], color="grey", ls=":", label="controller starts learning")
    warm = [h["step"] for h in history if not h.get("learning")]
    if warm:  # the warm-up's steps, scored or not, shaded: the panel's axis starts at 0 like the others
        ax.axvspan(0, max(warm), color="grey", alpha=0.12, label="warm-up (uniform controller)")
    if history:
        ax.set_xlim(0, max(h["step"] for h in history) + 1)
    if not history:
        _nothing(ax, "no controller step finished yet")
    elif not scored:
        _nothing(ax, "no step scored yet\n(the warm-up trains\nthe shared weights only)")
    ax.set_xlabel("controller step")
    ax.set_ylabel("reward")
    ax.set_title("AutoHAS search")
    if history:
        ax.legend(loc="best", fontsize=7, framealpha=0.6)
    ax.grid(alpha=0.3)
    for ax, name in zip([axes[0][1], axes[1][0], axes[1][1]], ("lr", "weight_decay", "augment")):
        key = f"hp.{name}"
        values = space["hp"][name].values
        xs = [p["step"] for p in probs]
        chosen = pick["hp"][name] if pick else None
        for i, v in enumerate(values):
            ys = [p["probs"][key][i] for p in probs]
            ax.plot(xs, ys, lw=3 if v == chosen else 1, marker="o" if len(xs) < 30 else None,
                    ms=7 if v == chosen else 4, label=f"{v:g}" + (" (chosen)" if v == chosen else ""))
        if not probs:
            _nothing(ax, "no snapshot of the controller yet\n(one every log_every steps)")
        ax.set_xlabel("controller step")
        ax.set_ylabel("probability")
        ax.set_title(f"{name} candidates")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.subplots_adjust(hspace=0.45, wspace=0.25)
    save_figure(fig, path)


def _nothing(ax, why: str) -> None:
    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="grey")


__all__ = ["run", "OPTIONS", "DEFAULT_BUDGET", "check_options", "joint_space", "supernet_spec", "Controller",
           "JointController",
           "CandidateEvaluator", "ChildTrainer", "train_alone", "plot"]
