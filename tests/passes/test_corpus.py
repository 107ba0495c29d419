"""The optimization passes over the ONNX backend test corpus.

Reference: the expected outputs shipped with the onnx wheel (onnx's backend test data), compared
with onnx's own per-case tolerance by ``graphmill.testing.onnx_corpus``. Every case ONNX Runtime
passes on the original must still pass after the passes (zero wrong results), and no pass may
crash (a pass that cannot handle a case leaves it unchanged and says so in its notes).
"""

from __future__ import annotations

import time

import onnx
import pytest

def optimize_case(model: onnx.ModelProto, case) -> onnx.ModelProto:
    """The embedded default schedule (what `graphmill optimize` runs), verifying after every pass."""
    from graphmill.frontend import from_proto, to_proto
    from graphmill.passes.builtin_schedules import default_schedule
    from graphmill.passes import run_passes

    g = from_proto(model, path=case.path or case.name)
    run_passes(g, default_schedule(), verify_each=True)
    return onnx.ModelProto.FromString(to_proto(g).SerializeToString())


@pytest.mark.slow
def test_corpus_no_wrong_results_no_crashes():
    from graphmill.testing.onnx_corpus import run_corpus, summarize

    t0 = time.perf_counter()
    results = run_corpus(transform=optimize_case)
    seconds = time.perf_counter() - t0
    s = summarize(results)
    crashes = [f"{r.name}: {r.transform_error}" for r in results if r.transform_error]
    wrong = [f"{r.name}: {r.new_ort_error}" for r in results if r.orig_ort and not r.new_ort and not r.transform_error]
    print(f"corpus: {s['cases']} cases, ORT passes {s['orig_ort_pass']} originals and {s['new_ort_pass']} optimized, "
          f"{seconds:.0f} s")
    assert s["orig_ort_pass"] > 1500  # the corpus is really there (about 1,700 ORT-passing cases)
    assert not crashes, f"{len(crashes)} crash(es): " + "; ".join(crashes[:10])
    assert not wrong, f"{len(wrong)} wrong result(s): " + "; ".join(wrong[:10])
