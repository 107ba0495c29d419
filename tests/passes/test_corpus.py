"""The optimization passes over the ONNX backend test corpus.

Reference: the expected outputs shipped with the onnx wheel (onnx's backend test data), compared
with onnx's own per-case tolerance by ``graphmill.testing.onnx_corpus``. Every case ONNX Runtime
passes on the original must still pass after the passes (zero wrong results), and no pass may
crash (a pass that cannot handle a case leaves it unchanged and says so in its notes).

Only what it asserts is computed: ONNX Runtime on the original and on the optimized model, no
onnx.checker runs (run_case's check columns; 2 s of vgg19's 11) and no second copy of the optimized proto.
"""

from __future__ import annotations

import time
import warnings

import onnx
import pytest

def optimize_case(model: onnx.ModelProto, case) -> onnx.ModelProto:
    """The embedded default schedule (what `graphmill optimize` runs), verifying after every pass, and the
    checks `save` makes before writing (two corpus models optimized and could not be saved: a Split's -1 size
    in an If branch no run takes, an outside check)."""
    from graphmill.frontend import from_proto, to_proto
    from graphmill.frontend.onnx_io import writable
    from graphmill.passes.builtin_schedules import default_schedule
    from graphmill.passes import run_passes

    g = from_proto(model, path=case.path or case.name)
    run_passes(g, default_schedule(), verify_each=True)
    proto = to_proto(writable(g, case.name))  # ONNX Runtime parses its serialization below: no copy parsed here
    return proto if isinstance(proto, onnx.ModelProto) else onnx.ModelProto.FromString(proto.SerializeToString())


@pytest.mark.slow
def test_corpus_no_wrong_results_no_crashes():
    from graphmill.testing.onnx_corpus import iter_cases, load_data_sets, ort_passes

    t0 = time.perf_counter()
    n = orig_ort_pass = new_ort_pass = 0
    crashes, wrong = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in iter_cases():
            n += 1
            model = case.load_proto()
            data_sets = load_data_sets(case, model)
            orig_ok = ort_passes(model, case, data_sets)[0]
            orig_ort_pass += orig_ok
            try:
                new = optimize_case(model, case)
            except Exception as e:  # noqa: BLE001 -- every crash is listed
                crashes.append(f"{case.name}: {type(e).__name__}: {e}"[:300])
                continue
            if orig_ok:
                new_ok, err = ort_passes(new, case, data_sets)
                new_ort_pass += new_ok
                if not new_ok:
                    wrong.append(f"{case.name}: {err}")
    seconds = time.perf_counter() - t0
    print(f"corpus: {n} cases, ORT passes {orig_ort_pass} originals and {new_ort_pass} optimized, {seconds:.0f} s")
    assert orig_ort_pass > 1500  # the corpus is really there (about 1,700 ORT-passing cases)
    assert not crashes, f"{len(crashes)} crash(es): " + "; ".join(crashes[:10])
    assert not wrong, f"{len(wrong)} wrong result(s): " + "; ".join(wrong[:10])
