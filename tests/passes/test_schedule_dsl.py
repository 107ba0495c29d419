"""The schedule DSL: file and inline forms parse to the same schedule, print back, and fail located.

Reference: the schedules written out by hand in each test (Python objects built directly).
"""

from __future__ import annotations

import pytest

from graphmill.passes.dsl import ScheduleError, load_schedule, parse_schedule
from graphmill.passes import Call, Fixpoint, Repeat, Run, Schedule

FILE_FORM = """
# cleanup first
schedule cleanup {
    dce(remove_custom=false)   # a comment after a step
    fixpoint(max_iters=3) { dce; dce }
}
schedule default {
    cleanup
    repeat(2) {
        dce(prune_functions=true)
    }
}
"""


def expected() -> Schedule:
    cleanup = Schedule("cleanup", [Run("dce", {"remove_custom": False}),
                                   Fixpoint([Run("dce"), Run("dce")], max_iters=3)])
    return Schedule("default", [Call(cleanup), Repeat([Run("dce", {"prune_functions": True})], count=2)])


def test_file_form_builds_the_schedule_python_would():
    assert parse_schedule(FILE_FORM, source="x.mill") == expected()


def test_inline_form_is_equivalent():
    inline = "dce{remove_custom=false},fixpoint(max_iters=3){dce,dce},repeat(2){dce{prune_functions=true}}"
    got = parse_schedule(inline)
    assert got.body == [Run("dce", {"remove_custom": False}), Fixpoint([Run("dce"), Run("dce")], 3),
                        Repeat([Run("dce", {"prune_functions": True})], 2)]
    assert got.to_inline() == expected().to_inline() == inline


def test_schedules_print_back_to_equal_schedules():
    sched = expected()
    assert parse_schedule(sched.to_text(), entry="default") == sched
    assert parse_schedule(sched.to_inline()).body == parse_schedule(sched.to_inline()).body
    assert "schedule cleanup {" in sched.to_text() and sched.to_text().index("cleanup {") < sched.to_text().index(
        "default {")


def test_option_values_of_every_kind():
    from graphmill.passes.dsl import _PARSER, _Values

    tree = _Values().transform(_PARSER.parse('p(a=1, b=-2.5e-1, c="s t", d=true, e=[conv-bn, 3, "x"], f=word)'))
    kw = {str(k.children[0]): k.children[1] for k in tree.children[0].children[1].children}
    assert kw == {"a": 1, "b": -0.25, "c": "s t", "d": True, "e": ["conv-bn", 3, "x"], "f": "word"}


def test_include_and_named_entry(tmp_path):
    (tmp_path / "common.mill").write_text("schedule tidy { dce }\n")
    (tmp_path / "main.mill").write_text('include "common.mill"\nschedule go { tidy\n dce }\n')
    s = load_schedule(str(tmp_path / "main.mill"))
    assert s.name == "go" and isinstance(s.body[0], Call) and s.body[0].schedule.name == "tidy"
    assert load_schedule(str(tmp_path / "main.mill") + ":tidy").body == [Run("dce")]


def located(text: str, source: str = "<inline>") -> ScheduleError:
    with pytest.raises(ScheduleError) as ei:
        parse_schedule(text, source=source)
    return ei.value


@pytest.mark.parametrize("text, line, col, needle", [
    ("dce,\ndcee", 2, 1, "unknown pass or schedule 'dcee' (did you mean 'dce'?)"),
    ("dce{remove_custm=true}", 1, 5, "no option 'remove_custm' (did you mean 'remove_custom'?)"),
    ("dce{remove_custom=3}", 1, 5, "must be true or false, got 3"),
    # a rewrite pass's `disable` takes its own rule names only
    ("simplify{disable=[identity, dropout-inferense]}", 1, 10,
     "does not accept 'dropout-inferense' (did you mean 'dropout-inference'?)"),
    ("merge-ops{disable=identity}", 1, 11, "does not accept 'identity'"),
    # brackets pair innermost-first, so the "}" closes fixpoint's "{" and the schedule's is the open one
    ("schedule a {\n  fixpoint(max_iters=2) { dce\n}", 1, 12, "'{' is never closed"),
    ("dce }", 1, 5, "no matching opening bracket"),
    ("fixpoint(max_iters=0){dce}", 1, 10, "option 'max_iters' must be an integer of at least 1, got 0"),
    ("repeat(two){dce}", 1, 1, "count must be an integer of at least 0, got 'two'"),
    ("dce(1)", 1, 1, "options must be named"),
    ("dce ! dce", 1, 5, "unexpected character '!'"),
])
def test_errors_name_line_column_and_show_a_caret(text, line, col, needle):
    e = located(text, "s.mill")
    assert (e.loc.line, e.loc.column) == (line, col), str(e)
    assert needle in str(e)
    first, shown, caret = str(e).splitlines()
    assert first.startswith(f"s.mill:{line}:{col}: ")
    assert shown.strip() == text.splitlines()[line - 1].strip()
    assert caret.index("^") - 4 == col - 1  # the caret sits under the column (4-space indent)


def test_missing_include_and_cycles(tmp_path):
    (tmp_path / "a.mill").write_text('include "nope.mill"\n')
    with pytest.raises(ScheduleError, match=r"a.mill:1:1: cannot include 'nope.mill': no such file"):
        load_schedule(str(tmp_path / "a.mill"))
    (tmp_path / "b.mill").write_text('include "c.mill"\n')
    (tmp_path / "c.mill").write_text('include "b.mill"\n')
    with pytest.raises(ScheduleError, match="include cycle"):
        load_schedule(str(tmp_path / "b.mill"))
    with pytest.raises(ScheduleError, match="calls itself"):
        parse_schedule("schedule a { b }\nschedule b { a }\nschedule c { a }")
