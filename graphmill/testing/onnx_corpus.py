"""The ONNX backend test corpus shipped inside the onnx wheel, as a reference for graphmill.

Cases: the on-disk model tests (``simple``, ``pytorch-converted``,
``pytorch-operator``), the ``light`` models (weights built by ConstantOfShape;
inputs made as onnx's own runner makes them, expected outputs shipped beside
them) and the ~1,900 node tests that ``load_node_model_tests()`` builds in
memory. For each case we record whether the original passes
``onnx.checker.check_model(full_check=True)`` and whether ONNX Runtime gives the
expected outputs (onnx's own tolerance per case), and the same for a
transformed copy (by default the graphmill import -> export round trip).

This is a reference nobody here wrote: the expected outputs come with onnx.
"""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np
import onnx
from onnx import numpy_helper

DATA_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
DISK_KINDS = ("simple", "pytorch-converted", "pytorch-operator")


@dataclass
class Case:
    name: str
    kind: str
    rtol: float
    atol: float
    path: str | None = None  # model file, when on disk
    model: onnx.ModelProto | None = None  # in-memory model (node tests)
    data_sets: list[tuple[list, list]] = field(default_factory=list)

    def load_proto(self) -> onnx.ModelProto:
        if self.model is not None:
            return self.model
        with open(self.path, "rb") as f:  # type: ignore[arg-type]
            return onnx.ModelProto.FromString(f.read())


def _read_pb(path: str, type_proto: onnx.TypeProto | None):
    data = open(path, "rb").read()
    if type_proto is not None and type_proto.HasField("sequence_type"):
        seq = onnx.SequenceProto.FromString(data)
        return numpy_helper.to_list(seq)
    if type_proto is not None and type_proto.HasField("optional_type"):
        return numpy_helper.to_optional(onnx.OptionalProto.FromString(data))
    return numpy_helper.to_array(onnx.TensorProto.FromString(data))


def _disk_data_sets(case_dir: str, model: onnx.ModelProto) -> list[tuple[list, list]]:
    inits = {t.name for t in model.graph.initializer}
    in_types = [i.type for i in model.graph.input if i.name not in inits]
    out_types = [o.type for o in model.graph.output]
    sets = []
    for ds in sorted(glob.glob(os.path.join(case_dir, "test_data_set_*"))):
        ins = [_read_pb(p, in_types[i] if i < len(in_types) else None)
               for i, p in enumerate(sorted(glob.glob(os.path.join(ds, "input_*.pb")),
                                           key=lambda s: int(s.rsplit("_", 1)[1][:-3])))]
        outs = [_read_pb(p, out_types[i] if i < len(out_types) else None)
                for i, p in enumerate(sorted(glob.glob(os.path.join(ds, "output_*.pb")),
                                            key=lambda s: int(s.rsplit("_", 1)[1][:-3])))]
        sets.append((ins, outs))
    return sets


def _light_data_sets(path: str, model: onnx.ModelProto) -> list[tuple[list, list]]:
    # Inputs exactly as onnx's runner generates them for light models (deterministic ramp).
    from onnx.backend.test.runner import Runner

    inits = {t.name for t in model.graph.initializer}
    ins = [Runner.generate_dummy_data(x, seed=0, random=False) for x in model.graph.input if x.name not in inits]
    prefix = os.path.splitext(path)[0]
    outs = []
    for i in range(len(model.graph.output)):
        p = f"{prefix}_output_{i}.pb"
        if not os.path.exists(p):
            return []
        outs.append(numpy_helper.to_array(onnx.TensorProto.FromString(open(p, "rb").read())))
    return [(ins, outs)]


def iter_cases(kinds: tuple[str, ...] = DISK_KINDS + ("light", "node")) -> Iterator[Case]:
    """All corpus cases of the given kinds, in a stable order."""
    from onnx.backend.test import loader

    for kind in kinds:
        if kind == "node":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tests = loader.load_node_model_tests()
            for t in sorted(tests, key=lambda t: t.name):
                sets = [(list(i), list(o)) for i, o in t.data_sets]
                yield Case(t.name, "node", t.rtol, t.atol, model=t.model, data_sets=sets)
        elif kind == "light":
            for path in sorted(glob.glob(os.path.join(DATA_DIR, "light", "light_*.onnx"))):
                name = os.path.basename(path)[: -len(".onnx")]
                yield Case(name, "light", 2e-3 if "densenet" in name else 1e-3, 1e-7, path=path)
        else:
            kind_dir = os.path.join(DATA_DIR, kind)
            if not os.path.isdir(kind_dir):
                continue
            for name in sorted(os.listdir(kind_dir)):
                case_dir = os.path.join(kind_dir, name)
                model_path = os.path.join(case_dir, "model.onnx")
                if os.path.exists(model_path):
                    yield Case(name, kind, 1e-3, 1e-7, path=model_path)


def load_data_sets(case: Case, model: onnx.ModelProto) -> list[tuple[list, list]]:
    if case.data_sets:
        return case.data_sets
    if case.kind == "light":
        return _light_data_sets(case.path, model)  # type: ignore[arg-type]
    return _disk_data_sets(os.path.dirname(case.path), model)  # type: ignore[arg-type]


def check_passes(model: onnx.ModelProto) -> tuple[bool, str]:
    try:
        onnx.checker.check_model(model, full_check=True)
        return True, ""
    except Exception as e:  # noqa: BLE001 -- any checker failure is a "no"
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def ort_passes(model: onnx.ModelProto, case: Case, data_sets: list[tuple[list, list]]) -> tuple[bool, str]:
    """Does ONNX Runtime produce the case's expected outputs (onnx runner's comparison)?"""
    import onnxruntime.backend as ort_backend
    from onnx.backend.test.runner import Runner

    if not data_sets:
        return False, "no test data"
    try:
        rep = ort_backend.prepare(model.SerializeToString(), "CPU")
        for inputs, expected in data_sets:
            # as onnx's runner does: in-memory cases may hold TensorProtos rather than arrays
            inputs = [_normalize(x) for x in inputs]
            expected = [_normalize(x) for x in expected]
            outputs = rep.run(inputs)
            Runner.assert_similar_outputs(expected, list(outputs), rtol=case.rtol, atol=case.atol)
        return True, ""
    except Exception as e:  # noqa: BLE001 -- every failure mode is a "no" for the rate
        return False, f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]


def _normalize(x):
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x


@dataclass
class CaseResult:
    name: str
    kind: str
    orig_check: bool
    orig_ort: bool
    new_check: bool
    new_ort: bool
    transform_error: str = ""
    orig_ort_error: str = ""
    new_ort_error: str = ""
    new_check_error: str = ""

    @property
    def regressed(self) -> bool:
        """The transformed model fails something the original passes."""
        return bool(self.transform_error) or (self.orig_check and not self.new_check) or (
            self.orig_ort and not self.new_ort)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["regressed"] = self.regressed
        return d


def graphmill_roundtrip(model: onnx.ModelProto, case: Case) -> onnx.ModelProto:
    """Import then export with graphmill (through a file path for on-disk cases)."""
    from graphmill.frontend import from_proto, load, to_proto

    if case.path is not None:
        g = load(case.path)
    else:
        g = from_proto(model, path=case.name)
    out = to_proto(g)
    return onnx.ModelProto.FromString(out.SerializeToString())


def run_case(case: Case, transform: Callable[[onnx.ModelProto, Case], onnx.ModelProto] = graphmill_roundtrip) -> CaseResult:
    model = case.load_proto()
    data_sets = load_data_sets(case, model)
    oc, _ = check_passes(model)
    oo, oo_err = ort_passes(model, case, data_sets)
    try:
        new = transform(model, case)
    except Exception as e:  # noqa: BLE001 -- recorded, and counted as a regression
        return CaseResult(case.name, case.kind, oc, oo, False, False, transform_error=f"{type(e).__name__}: {e}"[:300],
                          orig_ort_error=oo_err)
    nc, nc_err = check_passes(new)
    no, no_err = ort_passes(new, case, data_sets) if oo else (False, "skipped: original fails")
    return CaseResult(case.name, case.kind, oc, oo, nc, no, "", oo_err, no_err if oo else "", nc_err if oc else "")


def summarize(results: list[CaseResult]) -> dict:
    n = len(results)
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        k = by_kind.setdefault(r.kind, {"cases": 0, "orig_ort": 0, "new_ort": 0, "orig_check": 0, "new_check": 0})
        k["cases"] += 1
        k["orig_ort"] += r.orig_ort
        k["new_ort"] += r.new_ort
        k["orig_check"] += r.orig_check
        k["new_check"] += r.new_check
    return {
        "cases": n,
        "orig_ort_pass": sum(r.orig_ort for r in results),
        "new_ort_pass": sum(r.new_ort for r in results),
        "orig_check_pass": sum(r.orig_check for r in results),
        "new_check_pass": sum(r.new_check for r in results),
        "regressions": [r.name for r in results if r.regressed],
        "by_kind": by_kind,
    }


def run_corpus(kinds: tuple[str, ...] = DISK_KINDS + ("light", "node"),
               transform: Callable[[onnx.ModelProto, Case], onnx.ModelProto] = graphmill_roundtrip,
               progress: bool = False) -> list[CaseResult]:
    import sys

    import onnxruntime

    onnxruntime.set_default_logger_severity(4)
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, case in enumerate(iter_cases(kinds)):
            results.append(run_case(case, transform))
            if progress and (i + 1) % 200 == 0:
                print(f"  {i + 1} cases...", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m graphmill.testing.onnx_corpus [--json PATH]``: the round-trip pass rates table."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--json", help="write per-case results to this file")
    args = ap.parse_args(argv)
    results = run_corpus(progress=True)
    s = summarize(results)
    print(f"{'kind':<20}{'cases':>7}{'ORT orig':>10}{'ORT rt':>8}{'check orig':>12}{'check rt':>10}")
    for kind, k in s["by_kind"].items():
        print(f"{kind:<20}{k['cases']:>7}{k['orig_ort']:>10}{k['new_ort']:>8}{k['orig_check']:>12}{k['new_check']:>10}")
    print(f"{'total':<20}{s['cases']:>7}{s['orig_ort_pass']:>10}{s['new_ort_pass']:>8}"
          f"{s['orig_check_pass']:>12}{s['new_check_pass']:>10}")
    print(f"ONNX Runtime pass rate: originals {s['orig_ort_pass'] / s['cases']:.1%}, "
          f"round-tripped {s['new_ort_pass'] / s['cases']:.1%}; regressions: {len(s['regressions'])}")
    if args.json:
        from graphmill.util.files import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps([r.to_dict() for r in results], indent=1).encode())
    return 1 if s["regressions"] else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
