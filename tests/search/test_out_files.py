"""graphmill.search.workflow.OUT_FILES lists every name the search code writes in its OUT folder (what
util.files.check_inputs_outside refuses as an input there). Reference: the `os.path.join(out, "NAME")` literals
in graphmill/search itself; a new output file not added to the list fails here."""
from __future__ import annotations

import os
import re

import graphmill
from graphmill.search.workflow import OUT_FILES


def test_out_files_are_what_the_search_code_writes():
    root = os.path.join(os.path.dirname(graphmill.__file__), "search")
    written = set()
    for folder, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(folder, f), encoding="utf-8").read()
                written |= set(re.findall(r'os\.path\.join\(out, "([^"]+)"', text))
    oneshot = {"supernet.onnx", "supernet.json"}  # `graphmill supernet train` (its own command, SUPERNET_FILES)
    assert written - oneshot <= set(OUT_FILES), sorted(written - oneshot - set(OUT_FILES))
    assert len(written - oneshot) >= 15
