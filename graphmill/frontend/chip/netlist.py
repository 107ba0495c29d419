"""Read Circuit Training's netlist (``netlist.pb.txt``, plain or gzipped) into an ``ir.Graph``.

The file is a TensorFlow ``GraphDef`` in protobuf text format: one ``node { name input* attr* }`` per
macro, macro pin, standard-cell cluster, standard cell and port; a driver's ``input`` entries name the
sinks of the net it drives. The text format is parsed by a small hand-written tokenizer (one C-speed
``re.findall``, then a recursive descent over the tokens) so that errors can name the line and column
without importing protobuf or TensorFlow, and a 20,000-node netlist loads in about a second.

The graph follows ``graphmill.ir.ops.chip``'s convention (ops, attributes, nets as values).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from typing import Any

from graphmill.ir import Graph, Node, Value
from graphmill.ir.attrs import Attr, AttrKind
from graphmill.ir.ops.chip import (DOMAIN, HARD_MACRO, HARD_MACRO_PIN, NET_TYPE, ORIENTATIONS, PORT, SOFT_MACRO,
                                   SOFT_MACRO_PIN, STDCELL)
from graphmill.util.errors import UserInputError
from graphmill.util.files import MODEL_FILE_LIMIT, read_user_file


class NetlistError(UserInputError):
    """A netlist file is not a valid Circuit Training netlist (the message names file, line and column)."""


NETLIST_LIMIT = MODEL_FILE_LIMIT
"""Most bytes of a netlist (after gunzip): the 20,000-node Ariane netlist is 14 MB."""

METADATA_KEY = "graphmill.chip.metadata"
SOURCE_KEY = "graphmill.chip.source"
UNPOSITIONED_KEY = "graphmill.chip.unpositioned"
"""``graph.meta`` key: the netlist indices of the hard and soft macros the netlist gives no x or y (they sit at 0
until a ``.plc`` places them; ``apply_plc`` refuses a ``.plc`` that leaves one out)."""

_TOKEN = re.compile(r'#[^\n]*|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|[{}:\[\],;<>]|[A-Za-z0-9_.+\-]+|\S')
_WORD = re.compile(r"[A-Za-z0-9_.+\-]+\Z")
_TYPES = {"MACRO": HARD_MACRO, "macro": SOFT_MACRO, "MACRO_PIN": HARD_MACRO_PIN, "macro_pin": SOFT_MACRO_PIN,
          "PORT": PORT, "port": PORT, "STDCELL": STDCELL, "stdcell": STDCELL}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


class _Parser:
    """Descent over the token list (comments dropped); positions are recovered only for an error."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.toks = [t for t in _TOKEN.findall(text) if t[0] != "#"]
        self.i = 0

    def where(self, k: int) -> str:
        seen = -1
        for m in _TOKEN.finditer(self.text):
            if m.group()[0] == "#":
                continue
            seen += 1
            if seen == k:
                line = self.text.count("\n", 0, m.start()) + 1
                col = m.start() - (self.text.rfind("\n", 0, m.start()) + 1) + 1
                return f"line {line}, column {col}"
        line = self.text.count("\n") + 1
        return f"line {line}, column {len(self.text) - (self.text.rfind(chr(10)) + 1) + 1} (end of file)"

    def fail(self, msg: str, k: int | None = None) -> NetlistError:
        k = self.i if k is None else k
        return NetlistError(f"{self.path}: {self.where(k)}: {msg}")

    def message(self) -> list[tuple[str, Any, int]]:
        """The top-level fields ``(name, value, token index)``; a value is a scalar token (str, strings
        unquoted) or a nested field list."""
        toks = self.toks
        n = len(toks)
        good: set[str] = set()
        top: list[tuple[str, Any, int]] = []
        stack: list[list] = []
        fields = top
        i = 0
        try:
            while True:
                if i >= n:
                    if stack:
                        self.i = i
                        raise self.fail("unexpected end of file: missing '}'")
                    return top
                t = toks[i]
                if t == "}":
                    if not stack:
                        self.i = i
                        raise self.fail("unexpected '}'")
                    fields = stack.pop()
                    i += 1
                    if i < n and toks[i] in (",", ";"):
                        i += 1
                    continue
                if t not in good:
                    if not _WORD.match(t) or t[0].isdigit():
                        self.i = i
                        raise self.fail(f"expected a field name, found {t!r}")
                    good.add(t)
                k = i
                sep = toks[i + 1]
                i += 2
                if sep == ":":
                    v = toks[i]
                    if v == "{" or v == "<":
                        sep = v
                        i += 1
                    else:
                        i += 1
                        c = v[0]
                        if (c == '"' or c == "'") and (len(v) == 1 or v[-1] != c):
                            self.i = i - 1
                            raise self.fail(f"unterminated string (no closing {c} on this line)")
                        if c == '"' or c == "'":
                            v = _unquote(v)
                            while i < n and toks[i][0] in "\"'":  # adjacent strings concatenate
                                v += _unquote(toks[i])
                                i += 1
                        elif v not in good and not _WORD.match(v):
                            self.i = i - 1
                            raise self.fail(f"expected a value for {t!r}, found {v!r}")
                        fields.append((t, v, k))
                        if i < n and toks[i] in (",", ";"):
                            i += 1
                        continue
                if sep == "{" or sep == "<":
                    sub: list = []
                    fields.append((t, sub, k))
                    stack.append(fields)
                    fields = sub
                    continue
                self.i = i - 1
                raise self.fail(f"expected ':' or '{{' after {t!r}, found {sep!r}")
        except IndexError:
            self.i = n
            raise self.fail("unexpected end of file") from None


def _attr(name: str, v: Any) -> Attr:
    if isinstance(v, float):
        return Attr(name, AttrKind.FLOAT, v)
    if isinstance(v, int):
        return Attr(name, AttrKind.INT, v)
    return Attr(name, AttrKind.STRING, v)


#: the largest length (microns) a netlist or placement may state, a kilometre: nan or inf in a position or offset
#: became a .plc graphmill then refused to read, or a wirelength of 0, and sizes of 1e300 overflowed the area
#: checks to inf and the costs to nan (an outside check's fuzzer)
MAX_MICRONS = 1e9


def _length(p: _Parser, node: str, key: str, v: Any, k: int, *, low: float = -MAX_MICRONS) -> float:
    """A position, offset or size of ``node``: a number within [low, MAX_MICRONS], or a located refusal."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= MAX_MICRONS:
        return float(v)
    raise p.fail(f"node {node!r}: {key} must be a number of microns from {low:g} to {MAX_MICRONS:g}, got {v!r}", k)


def _number(p: _Parser, v: str, k: int, what: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise p.fail(f"{what}: expected a number, found {v!r}", k) from None


def _attr_value(p: _Parser, fields: list, k: int, key: str) -> Any:
    for name, v, kk in fields:
        if isinstance(v, list):
            raise p.fail(f"attr {key!r}: unexpected nested value {name!r}", kk)
        if name == "f":
            return _number(p, v, kk, f"attr {key!r}")
        if name == "i":
            try:
                return int(v)
            except ValueError:
                raise p.fail(f"attr {key!r}: expected an integer, found {v!r}", kk) from None
        if name in ("placeholder", "s"):
            return v
        if name == "b":
            return v in ("true", "True", "1")
        raise p.fail(f"attr {key!r}: unknown value kind {name!r} (expected f, i, s, b or placeholder)", kk)
    raise p.fail(f"attr {key!r}: empty value", k)


def parse_netlist_text(text: str, path: str = "<netlist>") -> Graph:
    """Parse netlist text (``path`` names it in errors) into a ``graphmill.chip`` graph."""
    p = _Parser(text, path)
    top = p.message()
    graph = Graph(os.path.basename(os.path.dirname(os.path.abspath(path))) or "netlist")
    graph.opset_imports[DOMAIN] = 1
    nodes: list[Node] = []
    by_name: dict[str, Node] = {}
    unpositioned: list[int] = []  # macros the netlist gives no position (UNPOSITIONED_KEY)
    sinks: list[tuple[Node, list[tuple[str, int]]]] = []
    pin_at: dict[str, int] = {}  # a pin node's token index, for errors found after the whole file is read
    for name, body, k in top:
        if name != "node" or not isinstance(body, list):
            raise p.fail(f"expected 'node {{', found {name!r}", k)
        node_name = None
        inputs: list[tuple[str, int]] = []
        attrs: dict[str, Any] = {}
        for fname, v, kk in body:
            if fname == "name" and not isinstance(v, list):
                node_name = v
            elif fname == "input" and not isinstance(v, list):
                inputs.append((v, kk))
            elif fname == "attr" and isinstance(v, list):
                key = None
                val: list | None = None
                for an, av, ak in v:
                    if an == "key" and not isinstance(av, list):
                        key = av
                    elif an == "value" and isinstance(av, list):
                        val = av
                if key is None or val is None:
                    raise p.fail("attr needs a key and a value { ... }", kk)
                attrs[key] = _attr_value(p, val, kk, key)
            elif fname in ("op", "device"):
                continue
            else:
                raise p.fail(f"unexpected field {fname!r} in node", kk)
        if node_name is None:
            raise p.fail("node without a name", k)
        if node_name == "__metadata__":
            graph.meta[METADATA_KEY] = attrs
            continue
        if node_name in by_name:
            raise p.fail(f"node {node_name!r} appears twice", k)
        kind = attrs.pop("type", None)
        op = _TYPES.get(kind) if isinstance(kind, str) else None
        if op is None:
            raise p.fail(f"node {node_name!r}: unknown type {kind!r} (expected MACRO, macro, MACRO_PIN, macro_pin, "
                         "PORT or STDCELL)", k)
        node_attrs: dict[str, Any] = {"index": len(nodes)}
        if op in (HARD_MACRO, SOFT_MACRO) and not ("x" in attrs and "y" in attrs):
            unpositioned.append(len(nodes))
        for key in ("x", "y"):
            node_attrs[key] = _length(p, node_name, key, attrs.pop(key, 0.0), k)
        if op in (HARD_MACRO, SOFT_MACRO, STDCELL):
            for key in ("width", "height"):
                if key not in attrs:
                    raise p.fail(f"node {node_name!r}: {kind} needs a {key}", k)
                node_attrs[key] = _length(p, node_name, key, attrs.pop(key), k, low=0.0)
            orient = str(attrs.pop("orientation", "N"))
            if orient not in ORIENTATIONS:
                raise p.fail(f"node {node_name!r}: unknown orientation {orient!r}", k)
            node_attrs["orientation"] = orient
            node_attrs["fixed"] = 0
        elif op == PORT:
            node_attrs.update(width=0.0, height=0.0, orientation="-", fixed=1)
            if "side" in attrs:
                node_attrs["side"] = str(attrs.pop("side"))
        else:
            if "macro_name" not in attrs:
                raise p.fail(f"node {node_name!r}: {kind} needs a macro_name", k)
            node_attrs["macro"] = str(attrs.pop("macro_name"))
            pin_at[node_name] = k
            for key in ("x_offset", "y_offset"):
                node_attrs[key] = _length(p, node_name, key, attrs.pop(key, 0.0), k)
        if "weight" in attrs:
            w = attrs.pop("weight")
            if not isinstance(w, (int, float)) or not 0 <= w <= MAX_MICRONS:  # nan, inf: a cost of nan (a fuzzer)
                raise p.fail(f"node {node_name!r}: weight must be a number from 0 to {MAX_MICRONS:g}, got {w!r}", k)
            node_attrs["weight"] = float(w)
        for key, v in attrs.items():  # carried through (ref_name, ...)
            node_attrs[key] = v if isinstance(v, (int, float, str)) else str(v)
        node = Node(op, (), [_attr(key, v) for key, v in node_attrs.items()], outputs=[Value(node_name, NET_TYPE)] if inputs else [], domain=DOMAIN,
                    name=node_name)
        nodes.append(node)
        by_name[node_name] = node
        if inputs:
            sinks.append((node, inputs))
    for node in nodes:
        if node.op_type in (HARD_MACRO_PIN, SOFT_MACRO_PIN):
            owner = by_name.get(node.attr("macro"))
            want = HARD_MACRO if node.op_type == HARD_MACRO_PIN else SOFT_MACRO
            if owner is None or owner.op_type != want:
                raise p.fail(f"pin {node.name!r}: its macro {node.attr('macro')!r} is not a "
                             f"{'hard' if want == HARD_MACRO else 'soft'} macro of the netlist", pin_at[node.name])
    for driver, names in sinks:
        net = driver.outputs[0]
        for sink_name, kk in names:
            sink = by_name.get(sink_name)
            if sink is None:
                raise p.fail(f"node {driver.name!r}: input {sink_name!r} is not a node of the netlist", kk)
            if sink.op_type in (HARD_MACRO, SOFT_MACRO):
                raise p.fail(f"node {driver.name!r}: input {sink_name!r} is a macro; nets connect pins", kk)
            sink.append_input(net)
    if not any(n.op_type in (HARD_MACRO, SOFT_MACRO, STDCELL) for n in nodes):
        raise NetlistError(f"{path}: no macros or standard cells: nothing to place (is this a netlist.pb.txt?)")
    graph.extend(nodes)
    graph.meta[UNPOSITIONED_KEY] = unpositioned
    return graph


#: the most gzip members a .gz netlist may hold: `cat a.gz b.gz` files have a few, and reading each member copies
#: the rest of the file (160,000 empty members took 16 s; a review)
MAX_GZIP_MEMBERS = 1000


def _gunzip(data: bytes, shown: str) -> bytes:
    """Every member of a gzip file (RFC 1952 allows several, as `cat a.gz b.gz` makes; gzip and zcat read them
    all: reading the first alone dropped the rest without a word), within NETLIST_LIMIT bytes in all."""
    parts: list[bytes] = []
    size = 0
    try:
        while data:
            if len(parts) == MAX_GZIP_MEMBERS:  # each member copies the rest of the file: quadratic past a few
                raise NetlistError(f"{shown}: more than {MAX_GZIP_MEMBERS:,} gzip members (a netlist compressed "
                                   "in pieces has a few)")
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = d.decompress(data, NETLIST_LIMIT + 1 - size)
            size += len(raw)
            if size > NETLIST_LIMIT or d.unconsumed_tail:
                raise NetlistError(f"{shown}: more than {NETLIST_LIMIT:,} bytes once decompressed")
            if not d.eof:  # a cut-off download: report it, not a parse error at the line where the text stops
                raise NetlistError(f"{shown}: the gzip file is truncated (it ends before its compressed data does)")
            parts.append(raw)
            data = d.unused_data
            if data and not data.startswith(b"\x1f\x8b"):
                if data.strip(b"\0"):  # zero padding after the last member is ignored, as gzip does
                    raise NetlistError(f"{shown}: {len(data):,} bytes after the gzip data are not a gzip member")
                break
    except (zlib.error, EOFError, gzip.BadGzipFile) as e:
        raise NetlistError(f"{shown}: not a valid gzip file ({e})") from None
    return b"".join(parts)


def read_netlist(path: str | os.PathLike) -> Graph:
    """Read ``netlist.pb.txt`` (or ``.gz``) into a ``graphmill.chip`` graph; errors name file, line, column."""
    shown = os.fspath(path)
    try:
        data = read_user_file(shown, NETLIST_LIMIT, "a netlist", error=NetlistError)
    except OSError as e:
        raise NetlistError(f"{shown}: cannot read ({e.strerror or e})") from None
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, shown)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise NetlistError(f"{shown}: line {line}: not UTF-8 text") from None
    graph = parse_netlist_text(text, shown)
    graph.meta[SOURCE_KEY] = shown
    return graph
