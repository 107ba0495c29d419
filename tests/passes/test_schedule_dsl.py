"""The schedule DSL: file and inline forms parse to the schedule written out by hand, print back to the
text written out by hand, fail located, and refuse what would crash (bad bytes, runaway nesting).

Reference: the schedules and their texts written out by hand in each test (Python objects built
directly, strings typed in), and graphmill/passes/default.mill for the built-in schedules.
"""

from __future__ import annotations

import math
import re

import pytest

from graphmill.ir import UserInputError
from graphmill.passes import Call, Fixpoint, Option, Pass, PassResult, Repeat, Run, Schedule, pass_class
from graphmill.passes import register_pass, registered_passes
from graphmill.passes.builtin_schedules import builtin_schedule
from graphmill.passes.dsl import MAX_ITERATIONS, MAX_NESTING, ScheduleError, load_schedule, parse_schedule

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

# FILE_FORM as to_text() must print it (typed in, not produced by the printer)
PRINTED = """schedule cleanup {
    dce(remove_custom=false)
    fixpoint(max_iters=3) {
        dce
        dce
    }
}

schedule default {
    cleanup
    repeat(2) {
        dce(prune_functions=true)
    }
}
"""

INLINE = "dce{remove_custom=false},fixpoint(max_iters=3){dce,dce},repeat(2){dce{prune_functions=true}}"


def expected() -> Schedule:
    cleanup = Schedule("cleanup", [Run("dce", {"remove_custom": False}),
                                   Fixpoint([Run("dce"), Run("dce")], max_iters=3)])
    return Schedule("default", [Call(cleanup), Repeat([Run("dce", {"prune_functions": True})], count=2)])


def test_file_form_builds_the_schedule_python_would():
    got = parse_schedule(FILE_FORM, source="x.mill")
    assert got == expected()
    # field by field: Call compares the steps it runs, so its name is checked on its own
    assert got.name == "default" and isinstance(got.body[0], Call) and got.body[0].schedule.name == "cleanup"
    assert got.body[0].schedule.body[1].max_iters == 3 and got.body[1].count == 2


def test_inline_form_is_equivalent():
    got = parse_schedule(INLINE)
    assert got.body == [Run("dce", {"remove_custom": False}), Fixpoint([Run("dce"), Run("dce")], 3),
                        Repeat([Run("dce", {"prune_functions": True})], 2)]


def test_a_string_with_a_newline_or_tab_prints_on_one_line_with_escapes():
    # the one-line form printed them raw, two lines for one (an outside check). Reference: the DSL's escapes
    # written by hand (README, "Schedules": \n, \t, \" and \\).
    sched = parse_schedule(r'learned-fuse(policy="a\nb\tc\\d\"e")')
    assert sched.body == [Run("learned-fuse", {"policy": 'a\nb\tc\\d"e'})]
    assert sched.to_inline() == r'learned-fuse{policy="a\nb\tc\\d\"e"}'
    assert parse_schedule(sched.to_inline()) == sched and parse_schedule(sched.to_text()) == sched


def test_schedules_print_to_the_text_written_by_hand_and_parse_back():
    sched = expected()
    assert sched.to_text() == PRINTED
    assert sched.to_inline() == INLINE
    assert parse_schedule(PRINTED) == sched  # `default` is the entry
    assert parse_schedule(INLINE).body == [Run("dce", {"remove_custom": False}), Fixpoint([Run("dce"), Run("dce")], 3),
                                           Repeat([Run("dce", {"prune_functions": True})], 2)]


@register_pass
class OptionKinds(Pass):
    """Takes one option of every kind (for the option-value test)."""

    name = "test-option-kinds"
    options = (Option("a", int, 0, "int"), Option("b", float, 0.0, "float"), Option("c", str, "", "string"),
               Option("d", bool, False, "bool"), Option("e", list, [], "list"), Option("f", str, "", "bare word"))
    preserves = "all"

    def run(self, graph, ctx):
        return PassResult(False)


@pytest.mark.parametrize("value", ["-3", ".5", "1e5", "-", "-x", ".", "-inf", "inf", "adám", "é", "true", "repeat",
                                   "fixpoint", "schedule", "a.b-c_d", "tab\there", 'quo"te', "back\\slash", "",
                                   "carriage\rreturn", "crlf\r\nend"])
def test_string_option_values_print_back_as_the_same_string(value):
    """A string printed bare must read back as that string: '-3' read back as a number, 'é' as no word at all
    (a reproducer's repro.mill then failed to parse instead of reproducing; an outside check). Reference: the
    DSL's grammar, through parse_schedule."""
    s = Schedule("main", [Run("test-option-kinds", {"c": value, "e": [value]})])
    assert parse_schedule(s.to_text()) == s
    assert parse_schedule(s.to_inline()).body == s.body


def test_string_escapes_are_the_five_known_ones_and_any_other_is_refused_where_it_is():
    """A backslash before any other character was dropped silently ("\\xff" read as 'xff', an outside check):
    it is refused now, at the backslash's line and column. Reference: the escapes the README lists."""
    got = parse_schedule('test-option-kinds(c="a\\nb\\tc\\"d\\\\e\\rf")')
    assert got.body == [Run("test-option-kinds", {"c": 'a\nb\tc"d\\e\rf'})]
    with pytest.raises(ScheduleError) as e:
        parse_schedule('schedule s {\n  test-option-kinds(c="ok",\n    e=["fine", "\\xff"])\n}\n', source="x.mill")
    msg = str(e.value)
    assert msg.splitlines()[0] == ("x.mill:3:17: unknown escape \\x in a string; a string knows \\n, \\r, \\t, \\\" "
                                   "and \\\\"), msg
    assert msg.splitlines()[2] == " " * (4 + 16) + "^", msg  # under the backslash (column 17; 4 spaces of margin)


@pytest.mark.parametrize("name", ["my sched", "3x", "fixpoint", "", "a{b"])
def test_a_schedule_name_the_dsl_cannot_read_back_is_refused(name):
    with pytest.raises(UserInputError, match="is not a word of the schedule language"):
        Schedule(name, [Run("dce")])


def test_option_values_of_every_kind():
    got = parse_schedule('test-option-kinds(a=1, b=-2.5e-1, c="s t", d=true, e=[conv-bn, 3, "x"], f=word)')
    assert got.body == [Run("test-option-kinds", {"a": 1, "b": -0.25, "c": "s t", "d": True,
                                                  "e": ["conv-bn", 3, "x"], "f": "word"})]
    assert type(got.body[0].options["a"]) is int and type(got.body[0].options["b"]) is float


def test_include_and_named_entry(tmp_path):
    (tmp_path / "common.mill").write_text("schedule tidy { dce }\n")
    (tmp_path / "main.mill").write_text('include "common.mill"\nschedule go { tidy\n dce }\n')
    s = load_schedule(str(tmp_path / "main.mill"))
    assert s.name == "go" and isinstance(s.body[0], Call) and s.body[0].schedule.name == "tidy"
    assert load_schedule(str(tmp_path / "main.mill") + ":tidy").body == [Run("dce")]
    # a name far from every one defined: the names are listed (it named none; an outside check)
    with pytest.raises(ScheduleError, match=r"no schedule named 'zz' in .*main\.mill \(it defines go, tidy\)$"):
        load_schedule(str(tmp_path / "main.mill") + ":zz")
    with pytest.raises(ScheduleError, match=r"no schedule named 'tid' in .*main\.mill \(did you mean 'tidy'\?\)$"):
        load_schedule(str(tmp_path / "main.mill") + ":tid")


# -- built-in schedules inside files -----------------------------------------------------------------------------


def test_builtin_schedules_are_callable_by_name_in_a_file():
    got = parse_schedule("schedule mine {\n    default\n    dce\n}\n", source="mine.mill")
    assert got.name == "mine" and got.body[1] == Run("dce")
    call = got.body[0]
    assert isinstance(call, Call) and call.schedule.name == "default"
    # default.mill: default = cleanup, fuse-conv-bn, fuse-matmul-add, fuse-gelu, fuse-layernorm, merge-ops, cleanup
    assert [getattr(s, "name", None) for s in call.schedule.body][1:6] == [
        "fuse-conv-bn", "fuse-matmul-add", "fuse-gelu", "fuse-layernorm", "merge-ops"]
    assert call.schedule.body[0].schedule.name == "cleanup"
    for name in ("cleanup", "default", "ort"):
        assert parse_schedule(name).body == [Call(builtin_schedule(name))]
        assert parse_schedule(name).body[0].schedule.name == name


def test_a_files_own_schedule_shadows_the_builtin_of_that_name():
    got = parse_schedule("schedule cleanup { dce }\nschedule mine { cleanup\n default }\n", source="m.mill")
    assert got.name == "mine"
    assert got.body[0].schedule.body == [Run("dce")]  # the file's own cleanup
    # the built-in default still calls the built-in cleanup (shape-inference, fold-constants, fixpoint{...})
    inner = got.body[1].schedule.body[0].schedule
    assert inner.name == "cleanup" and [s.name for s in inner.body[:2]] == ["shape-inference", "fold-constants"]
    # printed, the second schedule called cleanup gets another name, and the text parses back equal
    text = got.to_text()
    assert "schedule cleanup {\n    dce\n}" in text and "schedule cleanup.2 {\n    shape-inference" in text
    assert parse_schedule(text, entry="mine") == got



def test_a_schedule_file_not_named_mill_is_refused_as_an_include_is(tmp_path):
    """A Python file of passes given as the schedule was parsed, and refused at "1:1: unexpected '\"\"'" (an outside
    check); an include already had to be a .mill file. Reference: the file names, by hand."""
    plugin = tmp_path / "my_passes.py"
    plugin.write_text('"""passes"""\n')
    with pytest.raises(UserInputError, match=rf"^{re.escape(str(plugin))}: a schedule file is named \*\.mill \(a "
                                             "file of passes is loaded with --load-passes FILE"):
        load_schedule(str(plugin))
    text = tmp_path / "s.txt"
    text.write_text("dce\n")
    with pytest.raises(UserInputError, match=r"s.txt: a schedule file is named \*\.mill$"):
        load_schedule(str(text))
    (tmp_path / "s.mill").write_text("dce\n")
    assert load_schedule(str(tmp_path / "s.mill")).body == [Run("dce")]

def test_several_schedules_and_none_named_is_refused_with_the_list(tmp_path):
    path = tmp_path / "two.mill"
    path.write_text("schedule a { dce }\nschedule b { cse }\n")
    with pytest.raises(ScheduleError) as ei:
        load_schedule(str(path))
    assert str(ei.value) == (f"{path} defines 2 schedules that no other one calls (a, b) and none is named "
                             f"'default': say which one to run ({path}:NAME)")
    assert load_schedule(f"{path}:b").body == [Run("cse")]
    # the rules that do pick one: a schedule named default; else the one no other schedule calls
    assert parse_schedule("schedule a { dce }\nschedule default { cse }").name == "default"
    assert parse_schedule("schedule helper { dce }\nschedule main { helper\n cse }").name == "main"


# -- errors --------------------------------------------------------------------------------------------------------


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
    # a closer of the wrong kind names the bracket still open (it said "no matching opening bracket", an outside
    # check), and only the innermost open bracket's closer is offered ("expected ')' or ',' or ']' or '}'")
    ("fuse-conv-bn{disable=[conv-bn}}", 1, 30, "unexpected '}': the '[' at line 1, column 22 is not closed yet "
                                               "(expected ']' first)"),
    ("repeat(2 { dce }", 1, 10, "unexpected '{'; expected ')' or ','\n"),  # nothing after: the line ends
    ("fixpoint(max_iters=0){dce}", 1, 10, "option 'max_iters' must be an integer from 1 to 10,000, got 0"),
    ("fixpoint(max_iter=3){dce}", 1, 10, "fixpoint takes only max_iters=N (did you mean 'max_iters'?)"),
    ("repeat(two){dce}", 1, 1, "count must be an integer from 0 to 10,000, got 'two'"),
    ("dce(1)", 1, 1, "options must be named"),
    ("dce ! dce", 1, 5, "unexpected character '!'"),
    # it said "unexpected character '\"'" at the opening quote
    ('dce(input_initializers="auto)', 1, 24, 'unterminated string: no closing " after this one'),
    ('dce\nlearned-fuse(policy="a\\")', 2, 21, 'unterminated string: no closing " after this one'),
    # a misspelt keyword on a schedule's first line is reported there, not where the grammar gives up
    ("schedul a {\n    dce\n    cse\n}", 1, 1, "unknown pass or schedule 'schedul' (did you mean 'schedule'?)"),
    ("schedule a {\n  fixpont {\n    dce\n  }\n}", 2, 3,
     "unknown pass or schedule 'fixpont' (did you mean 'fixpoint'?)"),
    ("schedul a {}", 1, 1, "unknown pass or schedule 'schedul' (did you mean 'schedule'?)"),
    # balanced brackets: these said "unexpected '}': there is no matching opening bracket" or only "unexpected
    # end of input" (an outside check); the message names the construct
    ("dce{cse}", 1, 8, "options in braces after a pass are name=value (dce{name=value}); steps in braces belong "
                       "to fixpoint or repeat"),
    ("schedule main {\n  repeat(2)\n}", 3, 1, "'repeat' needs a body: repeat(N) { steps }"),
    ("fixpoint(max_iters=2)", 1, 22, "'fixpoint' needs a body: fixpoint(max_iters=N) { steps }"),
    ("fixpoint{max_iters=3}{dce}", 1, 19, "'fixpoint' takes its options in parentheses and its steps in braces"),
    ("schedule main {\n  schedule inner { dce }\n}", 2, 3,
     "schedule 'inner' is defined inside another; define schedules at the top level"),
    # an empty step (``cse,,dce``: a pass left out, or a leading separator) was accepted silently; not said of an
    # option list's separators, which keep their own message
    ("cse,,dce", 1, 5, "an empty step before this ',' (a step left out?)"),
    (",cse", 1, 1, "an empty step before this ','"),
    ("fixpoint{simplify;;dce}", 1, 19, "an empty step before this ';'"),
    ("dce{remove_custom=true,,x=1}", 1, 24, "unexpected ','; expected a name"),
])
def test_errors_name_line_column_and_show_a_caret(text, line, col, needle):
    e = located(text, "s.mill")
    assert (e.loc.line, e.loc.column) == (line, col), str(e)
    assert needle in str(e)
    first, shown, caret = str(e).splitlines()
    assert first.startswith(f"s.mill:{line}:{col}: ")
    assert shown.strip() == text.splitlines()[line - 1].strip()
    assert caret.index("^") - 4 == col - 1  # the caret sits under the column (4-space indent)


@pytest.mark.parametrize("text", [
    "# pasted\u2028text\nschedule default {\n  cse\n  simplfy\n}\n",  # U+2028 in a comment
    "# page\n\f\nschedule default {\n  simplfy\n}\n",  # a form-feed line
    "dce\r\n# a\x0bb\r\n  simplfy\r\n",  # CRLF and a vertical tab in a comment
])
def test_the_line_shown_is_the_line_counted_whatever_else_splits_lines(text):
    """Lines are counted at "\n" alone, but the line shown came from str.splitlines(), which also splits at U+2028,
    form feeds, vertical tabs and lone CRs: the caret sat under another line (an outside check). Reference: the
    text split at "\n" by hand."""
    e = located(text, "s.mill")
    first, shown, caret = str(e).splitlines()
    want = text.split("\n")[e.loc.line - 1].removesuffix("\r")
    assert want.strip() == "simplfy" and first.startswith(f"s.mill:{e.loc.line}:3: unknown pass or schedule")
    assert shown.strip() == want.strip() and shown[caret.index("^"):] == "simplfy"


def test_a_keyword_as_a_schedule_name_is_located():
    """`schedule fixpoint { cse }` was refused by Schedule itself, with no file, line or column (an outside
    check). Reference: the position of the definition, by hand."""
    e = located("# line 1\nschedule repeat {\n  cse\n}\n", "k.mill")
    first, shown, caret = str(e).splitlines()
    assert first == ("k.mill:2:10: a schedule cannot be named 'repeat': schedule, include, fixpoint and repeat are "
                     "keywords of the schedule language")
    assert shown[caret.index("^"):].startswith("repeat")


def test_a_file_of_lone_carriage_returns_reads_line_by_line():
    """Lines ended by a lone CR (classic Mac) were one line: the first comment ran to the end of the file, so the
    steps after it never ran and a typo there went unreported (a review). Reference: Python's universal newlines,
    which read CR, LF and CRLF alike."""
    assert parse_schedule("dce\r# tidy up\rsimplify\rcse\r").to_inline() == "dce,simplify,cse"
    e = located("dce\r# tidy up\rsimplfy\rcse\r", "s.mill")
    assert str(e).startswith("s.mill:3:1: unknown pass or schedule 'simplfy'")


def test_the_caret_sits_under_the_column_on_a_line_indented_with_tabs():
    """Before: one space per tab before the caret, so it pointed into the middle of the line wherever a terminal
    expands tabs. Reference: str.expandtabs of the shown line and of the caret line, which must agree."""
    e = located("\tdce,\tfold-constnts", "s.mill")
    _, shown, caret = str(e).splitlines()
    column = caret.expandtabs(8).index("^")
    assert shown.expandtabs(8)[column:].startswith("fold-constnts"), (shown, caret)


def test_an_unknown_pass_is_never_answered_with_the_schedule_calling_it():
    """`schedule with-my-fusions { my-fusions }` without the plugin loaded suggested 'with-my-fusions', the
    schedule itself (a cycle); the fix is --load-passes (a new user's report)."""
    e = located("schedule with-my-fusions {\n  dce\n  my-fusions(max_rounds=4)\n}", "s.mill")
    assert "with-my-fusions" not in str(e).splitlines()[0].split("unknown pass or schedule 'my-fusions'")[1]
    assert "--load-passes" in str(e)


def test_control_characters_are_not_echoed_raw():
    """A NUL (or an escape sequence) in a schedule was written to the terminal as it was, under the message.
    Reference: the shown line, one '?' per control character, the caret still under the column."""
    e = located("dce \x00 cse\x1b[2J", "s.mill")
    first, shown, caret = str(e).splitlines()
    assert first.startswith("s.mill:1:5: ") and "\x00" not in shown and "\x1b" not in shown
    assert shown.strip() == "dce ? cse?[2J" and shown[caret.index("^")] == "?"
    # C1 controls and U+2028 too (a consumer splitting lines split the message there; a review)
    first, shown, caret = str(located("dce \x85\u2028 cse\x9b2J", "s.mill")).split("\n")
    assert shown.strip() == "dce ?? cse?2J" and shown[caret.index("^")] == "?"


def test_a_long_line_is_shown_around_the_error():
    text = "dce," * 100 + "dcee"
    e = located(text)
    first, shown, caret = str(e).splitlines()
    assert first.startswith("<inline>:1:401: unknown pass or schedule 'dcee'")
    assert len(shown) < 120 and shown[caret.index("^"):].startswith("dcee")


def test_files_that_are_not_utf8_are_refused_in_one_line(tmp_path):
    bad = tmp_path / "bad.mill"
    bad.write_bytes(b"schedule a {\n  d\xffce\n}\n")  # 0xff at offset 16 (13 bytes of line 1, then "  d"): line 2, column 4
    with pytest.raises(ScheduleError) as ei:
        load_schedule(str(bad))
    assert str(ei.value) == f"{bad}:2:4: not UTF-8 text: byte 0xff at offset 16; schedule files are UTF-8"
    main = tmp_path / "main.mill"
    main.write_text('include "bad.mill"\nschedule b { dce }\n')
    with pytest.raises(ScheduleError) as ei:
        load_schedule(str(main))
    assert str(ei.value) == (f"{bad}:2:4: not UTF-8 text: byte 0xff at offset 16 (included from {main}:1:1); "
                             f"schedule files are UTF-8")
    bom = tmp_path / "bom.mill"
    bom.write_bytes("\ufeffschedule a { dce }\n".encode())  # a BOM is UTF-8: accepted
    assert load_schedule(str(bom)).body == [Run("dce")]


# -- nesting limits --------------------------------------------------------------------------------------------------


def nested(n: int, once: bool = False) -> str:
    """n nested fixpoints around dce; ``once``: each of max_iters=1, so that the runs limit (a fixpoint counts its
    max_iters, 8 by default) leaves a deep nest to the nesting limit."""
    return ("fixpoint(max_iters=1){" if once else "fixpoint{") * n + "dce" + "}" * n


def test_nesting_up_to_the_limit_parses_and_prints():
    s = parse_schedule(nested(MAX_NESTING, once=True))
    depth, step = 0, s.body[0]
    while isinstance(step, Fixpoint):
        depth, step = depth + 1, step.body[0]
    assert MAX_NESTING == 64 and depth == 64 and step == Run("dce")
    assert parse_schedule(s.to_inline()) == s


@pytest.mark.parametrize("n", [65, 67, 350])
def test_nesting_past_the_limit_is_one_located_error(n):
    # at the 65th fixpoint (column 577), however deep the text goes: from 67 levels on the bracket scan that runs
    # before lark recurses (no RecursionError) refuses it, and it named the bracket where its count of all brackets
    # gave up (the 68th '{', column 612 at 350 levels: an outside check); within a schedule block too
    e = located(nested(n))
    assert (e.loc.line, e.loc.column) == (1, 1 + 64 * 9)
    assert "steps nest deeper than 64 levels (the limit" in str(e)
    e = located("schedule s {\n" + nested(n) + "\n}")
    assert (e.loc.line, e.loc.column) == (2, 1 + 64 * 9) and "steps nest deeper than 64 levels" in str(e)


def test_calls_of_named_schedules_count_as_levels():
    chain = "".join(f"schedule s{i} {{ s{i + 1} }}\n" for i in range(400)) + "schedule s400 { dce }\n"
    e = located(chain + "schedule default { s0 }\n")
    assert "steps nest deeper than 64 levels" in str(e)
    # a schedule within the limit, called from deep inside a fixpoint nest, is refused where it is called
    ok = "schedule deep { " + nested(60, once=True) + " }\n"
    assert parse_schedule(ok + "schedule default { fixpoint { fixpoint { deep } } }").name == "default"
    e = located(ok + "schedule default {\n" + "fixpoint{" * 4 + "deep" + "}" * 4 + "}")
    assert (e.loc.line, e.loc.column) == (3, 37) and "nest deeper than 64" in str(e)


def test_include_cycles_self_includes_and_deep_include_chains(tmp_path):
    (tmp_path / "a.mill").write_text('include "b.mill"\nschedule a { dce }\n')
    (tmp_path / "b.mill").write_text('include "a.mill"\nschedule b { dce }\n')
    with pytest.raises(ScheduleError) as ei:
        load_schedule(str(tmp_path / "a.mill"))
    a, b = tmp_path / "a.mill", tmp_path / "b.mill"
    assert str(ei.value).splitlines()[0] == f"{b}:1:1: include cycle: {a} -> {b} -> {a}"
    (tmp_path / "self.mill").write_text('include "self.mill"\nschedule s { dce }\n')
    with pytest.raises(ScheduleError, match="include cycle"):
        load_schedule(str(tmp_path / "self.mill"))
    for i in range(80):
        (tmp_path / f"c{i}.mill").write_text(f'include "c{i + 1}.mill"\nschedule c{i} {{ dce }}\n')
    (tmp_path / "c80.mill").write_text("schedule c80 { dce }\n")
    with pytest.raises(ScheduleError, match="includes nest deeper than 64 files"):
        load_schedule(str(tmp_path / "c0.mill") + ":c0")


def test_include_of_a_file_that_is_not_a_schedule_is_refused_unread(tmp_path):
    """Before: ``include "secret.txt"`` read the file and echoed its first line under the caret of the syntax
    error, into whatever log the run went to."""
    (tmp_path / "secret.txt").write_text("token-1234\n")
    (tmp_path / "a.mill").write_text('include "secret.txt"\ndce\n')
    with pytest.raises(ScheduleError) as ei:
        load_schedule(str(tmp_path / "a.mill"))
    assert "a.mill:1:1: include 'secret.txt': an included file is a schedule, named *.mill" in str(ei.value)
    assert "token-1234" not in str(ei.value)


def test_a_file_included_twice_is_read_once(tmp_path):
    """Two included files both including a third (a diamond), or one file named twice, defined its schedules
    twice: 'schedule 'common' is defined twice', both places the same line (an outside check). Reference: the
    schedule the files spell out."""
    (tmp_path / "common.mill").write_text("schedule common { dce }\n")
    (tmp_path / "b.mill").write_text('include "common.mill"\nschedule b { common }\n')
    (tmp_path / "c.mill").write_text('include "common.mill"\nschedule c { common; cse }\n')
    (tmp_path / "d.mill").write_text('include "b.mill"\ninclude "c.mill"\ninclude "./common.mill"\n'
                                     "schedule default { b; c }\n")
    s = load_schedule(str(tmp_path / "d.mill"))
    assert [type(x) for x in s.body] == [Call, Call] and [r.name for r in s.runs()] == ["dce", "dce", "cse"]
    # a genuine second definition of the name is still refused
    (tmp_path / "e.mill").write_text('include "common.mill"\nschedule common { cse }\n')
    with pytest.raises(ScheduleError, match="schedule 'common' is defined twice"):
        load_schedule(str(tmp_path / "e.mill"))


def test_an_include_cycle_through_a_link_is_still_a_cycle(tmp_path):
    """Files read once by their real path must not hide a cycle spelled through a link (a review: a -> b -> c ->
    b2.mill, a link to b.mill, was accepted). Reference: the files' include lines."""
    import os

    (tmp_path / "a.mill").write_text('include "b.mill"\nschedule default { dce }\n')
    (tmp_path / "b.mill").write_text('include "c.mill"\nschedule b { dce }\n')
    (tmp_path / "c.mill").write_text('include "b2.mill"\nschedule c { dce }\n')
    os.symlink(tmp_path / "b.mill", tmp_path / "b2.mill")
    with pytest.raises(ScheduleError, match="include cycle: .*b.mill -> .*c.mill -> .*b2.mill"):
        load_schedule(str(tmp_path / "a.mill"))


def test_include_through_a_link_to_a_file_that_is_not_a_schedule_is_refused(tmp_path):
    """The *.mill rule checked the link's name: a secret.mill link to any file was read, its first line echoed
    under the caret of the syntax error (an outside check)."""
    import os

    (tmp_path / "secret.txt").write_text("token-1234\n")
    os.symlink(tmp_path / "secret.txt", tmp_path / "secret.mill")
    (tmp_path / "a.mill").write_text('include "secret.mill"\ndce\n')
    with pytest.raises(ScheduleError) as ei:
        load_schedule(str(tmp_path / "a.mill"))
    assert "an included file is a schedule, named *.mill" in str(ei.value) and "token-1234" not in str(ei.value)


def test_missing_include_and_recursive_schedules(tmp_path):
    (tmp_path / "a.mill").write_text('include "nope.mill"\n')
    with pytest.raises(ScheduleError, match=r"a.mill:1:1: cannot include 'nope.mill': no such file"):
        load_schedule(str(tmp_path / "a.mill"))
    e = located("schedule a { b }\nschedule b { a }\nschedule c { a }")
    assert str(e).splitlines()[0] == "<inline>:2:14: schedule 'a' calls itself (a -> b -> a)"
    e = located("schedule default { fixpoint { default } }")
    assert str(e).splitlines()[0] == "<inline>:1:31: schedule 'default' calls itself (default -> default)"


# -- option ranges -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, col, message", [
    ("compound-scale{alpha=0}", 16, "pass 'compound-scale': option 'alpha' must be > 0, got 0.0"),
    ("compound-scale{beta=-1.5}", 16, "pass 'compound-scale': option 'beta' must be > 0, got -1.5"),
    ("compound-scale{phi=-1}", 16, "pass 'compound-scale': option 'phi' must be 0 .. 100, got -1.0"),
    ("compound-scale{divisor=0}", 16, "pass 'compound-scale': option 'divisor' must be >= 1, got 0"),
    ("fold-constants{size_limit=-1}", 16, "pass 'fold-constants': option 'size_limit' must be >= 0, got -1"),
    ("merge-ops{hoist_min_macs=-1}", 11, "pass 'merge-ops': option 'hoist_min_macs' must be >= 0, got -1"),
    ("simplify{max_rounds=0}", 10, "pass 'simplify': option 'max_rounds' must be >= 1, got 0"),
    ("fixpoint(max_iters=-3){dce}", 10, "fixpoint: option 'max_iters' must be an integer from 1 to 10,000, got -3"),
    # compound-scale's phi: at most 100 (EfficientNet-B7 is phi = 6); 1e300 overflowed 1.2**phi mid-pass
    ("compound-scale{phi=1e300}", 16, "pass 'compound-scale': option 'phi' must be 0 .. 100, got 1e+300"),
    # 1e999 is inf: it passed "> 0" and was refused mid-run as the model's fault ("alpha=inf: must be > 0")
    ("compound-scale{alpha=1e999}", 16, "pass 'compound-scale': option 'alpha' must be a finite number, got inf"),
    ("compound-scale{gamma=-1e999}", 16, "pass 'compound-scale': option 'gamma' must be a finite number, got -inf"),
])
def test_options_out_of_range_are_refused_when_parsed(text, col, message):
    e = located(text, "r.mill")
    assert str(e).splitlines()[0] == f"r.mill:1:{col}: {message}"


# -- iteration limits (a schedule must finish: repeat(1000000000){dce} ran for days) -------------------------------


def test_repeat_and_fixpoint_counts_up_to_the_limit_parse():
    assert MAX_ITERATIONS == 10_000
    assert parse_schedule("repeat(10000){dce}").body == [Repeat([Run("dce")], 10_000)]
    assert parse_schedule("repeat(count=0){dce}").body == [Repeat([Run("dce")], 0)]
    assert parse_schedule("fixpoint(max_iters=10000){dce}").body == [Fixpoint([Run("dce")], 10_000)]
    # 10 x 10 x 100 = 10,000 runs of dce: exactly the limit; a fixpoint multiplies by its max_iters, which a body
    # that always changes something reaches (it counted as 1: fixpoint(max_iters=10000){repeat(10000){...}} was
    # accepted, 10^8 runs; an outside check)
    assert parse_schedule("repeat(10){fixpoint(max_iters=10){repeat(100){dce}}}").body[0].count == 10


@pytest.mark.parametrize("text, col, message", [
    ("repeat(1000000000){dce}", 1, "repeat: count must be an integer from 0 to 10,000, got 1000000000"),
    ("repeat(count=10001){dce}", 8, "repeat: count must be an integer from 0 to 10,000, got 10001"),
    ("fixpoint(max_iters=10001){dce}", 10,
     "fixpoint: option 'max_iters' must be an integer from 1 to 10,000, got 10001"),
    # nested counts multiply: 100 x 101 = 10,100 runs of dce (hand computation)
    ("repeat(101){repeat(100){dce}}", 1,
     "repeat(101) around steps already repeated 100 times would run them 10,100 times (at most 10,000)"),
    ("fixpoint(max_iters=10000){repeat(10000){dce}}", 10, "fixpoint(max_iters=10000) around steps already repeated "
     "10,000 times could run them 100,000,000 times (at most 10,000)"),
    # the default max_iters is 8: 100 x 8 x 100
    ("repeat(100){fixpoint{repeat(100){dce}}}", 1,
     "repeat(100) around steps already repeated 800 times would run them 80,000 times (at most 10,000)"),
])
def test_repeat_and_fixpoint_past_the_limit_are_refused_when_parsed(text, col, message):
    e = located(text, "r.mill")
    assert str(e).splitlines()[0] == f"r.mill:1:{col}: {message}"


def test_repeat_counts_multiply_through_calls_of_named_schedules():
    # b runs a 200 times, a runs dce 200 times: 40,000 runs of dce, refused where b repeats a
    e = located("schedule a { repeat(200){dce} }\nschedule b { repeat(200){a} }\n", "r.mill")
    assert str(e).splitlines()[0] == ("r.mill:2:14: repeat(200) around steps already repeated 200 times would "
                                      "run them 40,000 times (at most 10,000)")
    assert parse_schedule("schedule a { repeat(50){dce} }\nschedule b { repeat(200){a} }\n").name == "b"


def test_every_numeric_option_of_every_pass_has_a_range():
    # seed: any integer is a seed (masked to 32 bits); nothing else is unbounded
    unbounded = {("compound-scale", "seed")}
    for name, cls in registered_passes().items():
        if name.startswith("test-"):
            continue
        for o in cls.options:
            if o.type in (int, float) and (name, o.name) not in unbounded:
                assert o.accepted_range() is not None, (name, o.name)
    with pytest.raises(UserInputError, match="option 'alpha' must be a finite number, got nan"):
        pass_class("compound-scale")(alpha=math.nan)  # NaN compares false with every bound: refused too


@pytest.mark.parametrize("build, needle", [
    (lambda: Fixpoint([Run("dce")], 0), "fixpoint: option 'max_iters' must be an integer from 1 to 10,000, got 0"),
    (lambda: Fixpoint([Run("dce")], 10**9), "got 1000000000"),
    (lambda: Repeat([Run("dce")], -1), "repeat: count must be an integer from 0 to 10,000, got -1"),
    (lambda: Repeat([Run("dce")], 2.5), "got 2.5"),
])
def test_schedules_built_in_python_have_the_dsls_bounds(build, needle):
    """Before: ``Fixpoint(max_iters=0)`` ran nothing and ``Repeat(count=10**9)`` ran for days; the DSL refused both."""
    with pytest.raises(UserInputError, match=re.escape(needle)):
        build()


@pytest.mark.parametrize("text", ["schedule mine {\n default\n dce\n}\n", "default\ndce\n",
                                  "schedule cleanup { dce }\nschedule mine { default; cleanup }\n"])
def test_printed_text_selects_the_same_schedule(text):
    """A schedule that calls the built-in `default` printed `schedule default {...}` before itself, and a file
    holding a schedule named `default` runs that one: the reproducer's schedule.mill and the report's schedule
    text ran `default` without the user's steps. Reference: the DSL's own selection rule (README: "Which
    schedule of a file runs"), applied to the printed text."""
    s = parse_schedule(text)
    printed = s.to_text()
    assert parse_schedule(printed) == s
    assert [r.name for r in parse_schedule(printed).runs()] == [r.name for r in s.runs()]
    assert "schedule default {" not in printed and "schedule default.2 {" in printed


def test_a_trailing_separator_is_still_accepted():
    """Refusing empty steps (``cse,,dce``) keeps the usual trailing separator. Reference: the same schedule
    without it."""
    assert parse_schedule("cse,dce,") == parse_schedule("cse,dce")
    assert parse_schedule("fixpoint{simplify;cse;}") == parse_schedule("fixpoint{simplify;cse}")


def test_the_caret_counts_two_columns_for_a_wide_character():
    """One space per character put the caret left of the problem after CJK or emoji, which a terminal shows two
    columns wide (an outside check; gcc and rustc pad by display width). Reference: unicodedata's east-asian
    width of each character of the shown line, summed up to the caret."""
    import unicodedata

    e = located('schedule a { dce("图图😀", @) }', "s.mill")
    _, shown, caret = str(e).splitlines()

    def width(text):
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    at = caret.index("^")
    cut = next(i for i in range(len(shown) + 1) if width(shown[:i]) >= at)
    assert width(shown[:cut]) == at and shown[cut] == "@", (shown, caret)


def test_an_integer_longer_than_python_converts_is_a_located_error():
    """A size_limit of 5,000 digits was a ValueError traceback from int() (Python converts at most 4,300 digits;
    an outside check)."""
    e = located("fold-constants(size_limit=" + "9" * 5000 + ")", "s.mill")
    assert str(e).startswith("s.mill:1:27: an integer of 5,000 digits; options take at most 4,000")


@pytest.mark.parametrize("name", ["repeated-cleanup", "fixpoint-helpers", "repeat.2", "fixpoint_x"])
def test_a_name_that_starts_with_a_keyword_is_a_name(name):
    """A plugin pass `repeated-cleanup` or a file's `schedule fixpoint-helpers` was defined and could not be
    called: the lexer took its first letters for the keyword ("'repeat' needs a body"; an outside check).
    Reference: the README's rule, any word but the four keywords is a name."""
    s = parse_schedule(f"schedule {name} {{ dce }}\nschedule default {{ {name}; cse }}\n")
    assert [r.name for r in s.runs()] == ["dce", "cse"] and parse_schedule(s.to_text()) == s
    assert [type(x).__name__ for x in parse_schedule("repeat(2){dce}, fixpoint{cse}").body] == ["Repeat", "Fixpoint"]


def test_the_inline_form_leaves_out_a_called_empty_schedule():
    """A call of an empty schedule printed 'dce,,cse', which the DSL refuses (an empty step): the report's
    schedule_inline could not be rerun (an outside check). Reference: the DSL parsing the printed form back to
    the same passes."""
    s = parse_schedule("schedule e { }\nschedule main2 { dce; e; cse }\n", entry="main2")
    assert s.to_inline() == "dce,cse"
    assert [r.name for r in parse_schedule(s.to_inline()).runs()] == ["dce", "cse"]
    assert parse_schedule("schedule e { }\nschedule m { fixpoint{ e }; dce }\n", entry="m").to_inline() == \
        "fixpoint(max_iters=8){},dce"


def test_a_schedule_built_in_python_is_held_to_the_dsls_limits():
    """A schedule built in Python ran dce 40,000 times, or 100 levels deep, where the same text is refused; the
    reproducer of its failure then held a schedule.mill the parser refused (an outside check). Reference: the
    DSL's refusal of the same schedules' text (hand computation: 200 x 200 = 40,000 runs; 65 levels)."""
    from graphmill.ir.builder import GraphBuilder
    from graphmill.passes import PassManager

    many = Schedule("many", [Repeat([Repeat([Run("dce")], 200)], 200)])
    deep_body: list = [Run("dce")]
    for _ in range(MAX_NESTING + 1):
        deep_body = [Repeat(deep_body, 1)]
    deep = Schedule("deep", deep_body)
    for schedule, message in ((many, "could run it 40,000 times (at most 10,000)"),
                              (deep, f"steps nest deeper than {MAX_NESTING} levels")):
        with pytest.raises(ScheduleError):
            parse_schedule(schedule.to_inline())
        with pytest.raises(UserInputError, match=re.escape(message)):
            PassManager(schedule)
    b = GraphBuilder("g")
    b.output(b.Relu(b.input("x", "float32", [2])), "y")
    ok = Schedule("ok", [Repeat([Repeat([Run("dce")], 100)], 100)])  # exactly the limit: runs
    assert len(PassManager(ok).run(b.build()).records) == 10_000
