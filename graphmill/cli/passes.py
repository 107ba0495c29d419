"""``graphmill passes``: the registered passes with their documentation, options and rules."""

from __future__ import annotations

import argparse
import textwrap

from graphmill import api
from graphmill.cli.common import emit_json


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("passes", help="list the passes with their documentation, options and rules")
    p.add_argument("--load-passes", metavar="FILE.py", action="append",
                   help="also list the passes this Python file registers (as optimize --load-passes)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    for plugin in args.load_passes or []:
        api.load_passes(plugin)
    rows = api.list_passes()
    if args.json:
        emit_json({"passes": rows})
        return 0
    for r in rows:
        summary = " ".join(r["doc"].split("\n\n", 1)[0].split())  # the first paragraph, not its first line
        print(f"{r['name']}  ({r['exactness']})")
        print(textwrap.fill(summary, width=110, initial_indent="    ", subsequent_indent="    "))
        for o in r["options"]:
            bounds = f" ({o['range']})" if "range" in o else ""
            print(f"    {o['name']}: {o['type']}{bounds} = {o['default']!r}  {o['doc']}")
        for rule in r["rules"]:
            print(f"    rule {rule['name']} [{rule['exactness']}]")
    return 0
