"""Search spaces as data: named parameters (``Choice``, ``Int``, ``Float``), nested sub-spaces and conditionals.

A configuration of a space is a plain JSON-able nested dict that holds only the *active* parameters: a parameter
with ``when={"op": "mbconv"}`` (or ``when={"op": ["mbconv", "dwconv"]}``) exists only when its sibling ``op`` takes
one of those values; a nested ``Space`` becomes a nested dict. Everything a strategy needs is here, so strategies
never look inside a parameter's fields:

* ``sample(rng)``: a random configuration (each active parameter uniform in its domain, log-uniform when ``log``);
* ``mutate(config, rng)``: a configuration that differs in exactly one active parameter (parameters that become
  active are sampled, those that become inactive dropped), the move regularized evolution makes;
* ``encode(config)``: a fixed-length float32 vector for model-based strategies (one-hot for choices, numbers scaled
  to [0, 1], log-scaled with ``log``, a zero block plus an "active" bit for conditional parameters);
* ``key(config)``: a stable hash (sha256 of canonical JSON: sorted keys, values normalized through the space), the
  same in every process, so a search can answer a repeated configuration from its history;
* ``validate(config)``: the canonical form of a configuration, or a ``UserInputError`` naming the parameter path;
* ``to_json()`` / ``Space.from_json()``: the documented JSON schema, which round-trips::

    {"type": "space", "params": {NAME: PARAM, ...}}
    PARAM = {"type": "choice", "values": [v, ...], "when": {SIBLING: v | [v, ...]}?}
          | {"type": "int", "low": 1, "high": 8, "log": false, "when": {...}?}
          | {"type": "float", "low": 0.0001, "high": 0.1, "log": true, "when": {...}?}
          | {"type": "space", "params": {...}, "when": {...}?}

A ``when`` value that is a list means "any of these"; to condition on a list-valued choice, wrap it: ``[[1, 2]]``.
Choice values are JSON values (str, int, float, bool, None, or lists/dicts of them). Parameter names may not
contain ``.``: paths such as ``block1.kernel`` name nested parameters in messages and in ``params()``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from graphmill.util.errors import UserInputError
from graphmill.util.suggest import did_you_mean
from graphmill.util.text import short_number

__all__ = ["Param", "Choice", "Int", "Float", "Space", "product"]

_MISSING = object()
_OTHER = object()  # Space.size: the values of a controller that no condition names, as one class
_END = object()  # Space._enumerated: a domain used up


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _plain(v: Any) -> Any:
    """A JSON-able copy of a choice value (tuples become lists, numpy scalars Python numbers)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if v is None or isinstance(v, (str, int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("not finite")
        return v
    raise ValueError(f"{type(v).__name__} is not a JSON value")


def _tag(v: Any) -> Any:
    """A hashable identity of a choice value consistent with ``_same`` (None when unhashable)."""
    t = type(v)
    if t is str:
        return ("s", v)
    if t is int or t is float:
        return ("n", float(v))
    if t is bool:
        return ("b", v)
    if isinstance(v, (bool, np.bool_)):
        return ("b", bool(v))
    if _is_number(v):
        return ("n", float(v))
    if isinstance(v, str):
        return ("s", v)
    if v is None:
        return ("z",)
    return None


def _copy(config: Any) -> Any:
    """A deep copy of plain configuration data (nested dicts of JSON values)."""
    if type(config) is dict:
        return {k: _copy(v) for k, v in config.items()}
    if type(config) is list:
        return [_copy(v) for v in config]
    return config


def _same(a: Any, b: Any) -> bool:
    """Equality of two choice values that does not confuse ``True`` with ``1`` (but does equate ``1`` and ``1.0``)."""
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
        return isinstance(a, (bool, np.bool_)) and isinstance(b, (bool, np.bool_)) and bool(a) == bool(b)
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class Param:
    """One named dimension of a space. ``when`` (normalized by the owning ``Space``) makes it conditional."""

    kind = "param"

    def __init__(self, when: Mapping[str, Any] | None = None) -> None:
        if when is not None and not isinstance(when, Mapping):
            raise UserInputError(f"when={when!r}: must be a dict {{sibling name: value or [values]}}")
        self.when: dict[str, Any] | None = dict(when) if when else None

    # -- what every parameter kind provides
    def sample(self, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def mutate_value(self, value: Any, rng: np.random.Generator) -> Any:
        """A value different from ``value`` (the caller checks ``cardinality() > 1``)."""
        raise NotImplementedError

    def canonical(self, value: Any, path: str) -> Any:
        """The canonical form of ``value`` or a ``UserInputError`` naming ``path``."""
        raise NotImplementedError

    def cardinality(self) -> float:
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Length of this parameter's block in ``Space.encode`` (without the "active" bit)."""
        return 1

    def encode_into(self, value: Any, out: np.ndarray, offset: int) -> None:
        raise NotImplementedError

    def to_json(self) -> dict:
        raise NotImplementedError

    def _when_json(self, d: dict) -> dict:
        if self.when:
            d["when"] = {k: _plain(v) for k, v in self.when.items()}
        return d

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Param) and _canonical_json(self.to_json()) == _canonical_json(other.to_json())

    def __hash__(self) -> int:
        return hash(_canonical_json(self.to_json()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_json()!r})"


class Choice(Param):
    """A categorical parameter: one of ``values`` (JSON values, distinct)."""

    kind = "choice"

    def __init__(self, values: list | tuple, when: Mapping[str, Any] | None = None) -> None:
        super().__init__(when)
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            raise UserInputError(f"Choice({values!r}): values must be a list")
        if not values:
            raise UserInputError("Choice([]): needs at least one value")
        plain = []
        for v in values:
            try:
                plain.append(_plain(v))
            except ValueError as e:
                raise UserInputError(f"Choice value {v!r}: {e}") from None
        for i, v in enumerate(plain):
            if any(_same(v, w) for w in plain[:i]):
                raise UserInputError(f"Choice({plain!r}): value {v!r} appears twice")
        self.values: list = plain
        tags = [_tag(v) for v in plain]
        self._fast = {t: i for i, t in enumerate(tags)} if None not in tags else None

    def index(self, value: Any) -> int:
        """Position of ``value`` in ``values`` (-1 when absent)."""
        if self._fast is not None:
            t = _tag(value)
            if t is not None:
                return self._fast.get(t, -1)
        for i, v in enumerate(self.values):
            if _same(v, value):
                return i
        return -1

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def mutate_value(self, value: Any, rng: np.random.Generator) -> Any:
        i = self.index(value)
        j = int(rng.integers(len(self.values) - 1))
        return self.values[j + 1 if j >= i else j]

    def canonical(self, value: Any, path: str) -> Any:
        i = self.index(value)
        if i < 0:
            raise UserInputError(f"{path}: {value!r} is not one of {self.values!r}")
        return self.values[i]

    def cardinality(self) -> float:
        return len(self.values)

    @property
    def width(self) -> int:
        return len(self.values)

    def encode_into(self, value: Any, out: np.ndarray, offset: int) -> None:
        out[offset + self.index(value)] = 1.0

    def to_json(self) -> dict:
        return self._when_json({"type": "choice", "values": list(self.values)})


#: the largest |bound| of an Int: its values are drawn as int64 and encoded as float64, which is exact to 2^53
MAX_INT_BOUND = 2 ** 53


class _Numeric(Param):
    integral = False

    def __init__(self, low: float, high: float, log: bool = False, when: Mapping[str, Any] | None = None) -> None:
        super().__init__(when)
        name = type(self).__name__
        for what, v in (("low", low), ("high", high)):
            try:
                finite = _is_number(v) and math.isfinite(float(v))
            except OverflowError:  # an integer past float's range: a traceback, exit 1 (an outside check)
                finite = False
            if not finite:
                raise UserInputError(f"{name}: {what}={short_number(v)} must be a finite number")
            if self.integral and not (isinstance(v, (int, np.integer)) or float(v).is_integer()):
                raise UserInputError(f"{name}: {what}={v!r} must be an integer")
            if self.integral and abs(int(v)) > MAX_INT_BOUND:  # sampled as int64, encoded as float64: exact to 2^53
                raise UserInputError(f"{name}: {what}={short_number(int(v))} must be within +-2^53 ({MAX_INT_BOUND})")
        if not isinstance(log, (bool, np.bool_)):
            raise UserInputError(f"{name}: log={log!r} must be true or false")
        conv = int if self.integral else float
        self.low, self.high, self.log = conv(low), conv(high), bool(log)
        if self.low > self.high:
            raise UserInputError(f"{name}({self.low}, {self.high}): low is above high")
        if self.log and self.low <= 0:
            raise UserInputError(f"{name}({self.low}, {self.high}, log=True): low must be > 0 on a log scale")

    def scaled(self, value: float) -> float:
        """``value`` mapped to [0, 1] (linearly, or in log space with ``log``)."""
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def unscaled(self, u: float) -> float:
        """The inverse of ``scaled`` (not rounded for ``Int``)."""
        u = min(1.0, max(0.0, float(u)))
        if self.log:
            return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        return self.low + u * (self.high - self.low)

    def encode_into(self, value: Any, out: np.ndarray, offset: int) -> None:
        out[offset] = self.scaled(value)

    def to_json(self) -> dict:
        return self._when_json({"type": self.kind, "low": self.low, "high": self.high, "log": self.log})


class Int(_Numeric):
    """An integer in [low, high] (both included), sampled uniformly, or log-uniformly with ``log=True``."""

    kind = "int"
    integral = True

    def sample(self, rng: np.random.Generator) -> int:
        if not self.log:
            return int(rng.integers(self.low, self.high + 1))
        # log-uniform over the integers: uniform on [log(low - 0.5), log(high + 0.5)) then rounded
        lo, hi = math.log(max(self.low - 0.5, 1e-12)), math.log(self.high + 0.5)
        v = int(round(math.exp(lo + float(rng.random()) * (hi - lo))))
        return min(self.high, max(self.low, v))

    def mutate_value(self, value: Any, rng: np.random.Generator) -> int:
        if self.log:
            for _ in range(64):
                v = self.sample(rng)
                if v != value:
                    return v
        j = self.low + int(rng.integers(self.high - self.low))
        return j + 1 if j >= value else j

    def canonical(self, value: Any, path: str) -> int:
        if not _is_number(value) or not math.isfinite(float(value)) or float(value) != int(value):
            raise UserInputError(f"{path}: {value!r} is not an integer")
        v = int(value)
        if not self.low <= v <= self.high:
            raise UserInputError(f"{path}: {v} is outside [{self.low}, {self.high}]")
        return v

    def cardinality(self) -> float:
        return self.high - self.low + 1


class Float(_Numeric):
    """A real number in [low, high], sampled uniformly, or log-uniformly with ``log=True``."""

    kind = "float"

    def sample(self, rng: np.random.Generator) -> float:
        return min(self.high, max(self.low, self.unscaled(float(rng.random()))))

    def mutate_value(self, value: Any, rng: np.random.Generator) -> float:
        # a Gaussian step of 0.2 in the scaled space, reflected at the bounds: local moves, still anywhere reachable
        u = self.scaled(value)
        for _ in range(64):
            w = u + 0.2 * float(rng.standard_normal())
            while w < 0 or w > 1:
                w = -w if w < 0 else 2 - w
            v = min(self.high, max(self.low, self.unscaled(w)))
            if v != value:
                return v
        return self.low if value != self.low else self.high

    def canonical(self, value: Any, path: str) -> float:
        if not _is_number(value) or not math.isfinite(float(value)):
            raise UserInputError(f"{path}: {value!r} is not a finite number")
        v = float(value) + 0.0  # -0.0 -> 0.0
        if not self.low <= v <= self.high:
            raise UserInputError(f"{path}: {v} is outside [{self.low}, {self.high}]")
        return v

    def cardinality(self) -> float:
        return math.inf if self.high > self.low else 1



def as_generator(rng: Any) -> np.random.Generator:
    """``rng`` as the numpy Generator ``sample``/``mutate`` draw from: one is taken as is, an int seeds one;
    anything else (Python's ``random.Random`` has none of its methods) is refused in one line."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise UserInputError(f"rng: {type(rng).__name__} {rng!r} is not a numpy.random.Generator "
                         "(numpy.random.default_rng(seed)) nor a seed >= 0")

class Space(Param):
    """A set of named parameters (some conditional, some nested spaces); also a parameter of a bigger space."""

    kind = "space"

    def __init__(self, params: Mapping[str, Param], when: Mapping[str, Any] | None = None) -> None:
        super().__init__(when)
        if not isinstance(params, Mapping):
            raise UserInputError(f"Space({params!r}): needs a dict {{name: Choice | Int | Float | Space}}")
        self._params: dict[str, Param] = {}
        for name, p in params.items():
            if not isinstance(name, str) or not name or "." in name:
                raise UserInputError(f"parameter name {name!r}: must be a non-empty string without '.'")
            if not isinstance(p, Param):
                raise UserInputError(f"{name}: {p!r} is not a Choice, Int, Float or Space")
            self._params[name] = p
        # conditions: sibling -> tuple of allowed canonical values
        self._conds: dict[str, dict[str, tuple]] = {}
        for name, p in self._params.items():
            if not p.when:
                continue
            conds = {}
            for sib, allowed in p.when.items():
                if sib not in self._params:
                    raise UserInputError(f"{name}.when: refers to {sib!r}, which is not a sibling"
                                         + did_you_mean(sib, self._params))
                if sib == name:
                    raise UserInputError(f"{name}.when: refers to itself")
                ref = self._params[sib]
                if not isinstance(ref, (Choice, Int)):
                    raise UserInputError(f"{name}.when: refers to {sib!r}, which is a {ref.kind}; "
                                         "only a choice or an int can control a parameter")
                vals = allowed if isinstance(allowed, (list, tuple)) else [allowed]
                if not vals:
                    raise UserInputError(f"{name}.when: {{{sib!r}: []}} can never hold")
                conds[sib] = tuple(ref.canonical(v, f"{name}.when.{sib}") for v in vals)
            self._conds[name] = conds
        self._order = self._topological()
        self._controllers = {s for c in self._conds.values() for s in c}
        self._layout_cache: list | None = None
        self._size_cache: float | None = None  # a space is not changed once built: counted once (a run asks 5 times)
        self._has_conds: bool | None = None
        self._mutable_all: list | None = None

    # -- structure
    def _topological(self) -> list[str]:
        """Every parameter after the siblings its ``when`` names, otherwise in declaration order (depth first,
        with an explicit stack: a recursion per link failed on a chain of ~1,000 conditions declared last first)."""
        order: list[str] = []
        state: dict[str, int] = {}
        for root in self._params:
            if state.get(root) == 2:
                continue
            path = [root]  # the chain being visited; each entry's controllers are visited before it is placed
            todo = [iter(self._conds.get(root, {}))]
            state[root] = 1
            while todo:
                sib = next(todo[-1], None)
                if sib is None:
                    todo.pop()
                    state[path[-1]] = 2
                    order.append(path.pop())
                elif state.get(sib) == 1:
                    raise UserInputError("conditions form a cycle: " + " -> ".join(path + [sib]))
                elif state.get(sib) != 2:
                    state[sib] = 1
                    path.append(sib)
                    todo.append(iter(self._conds.get(sib, {})))
        return order

    def __getitem__(self, name: str) -> Param:
        try:
            return self._params[name]
        except KeyError:
            raise KeyError(f"{name!r}: no such parameter" + did_you_mean(name, self._params)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._params

    def __len__(self) -> int:
        return len(self._params)

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def items(self):
        return self._params.items()

    def _active(self, name: str, values: Mapping[str, Any]) -> bool:
        for sib, allowed in self._conds.get(name, {}).items():
            v = values.get(sib, _MISSING)
            if v is _MISSING or not any(_same(v, a) for a in allowed):
                return False
        return True

    def params(self, prefix: str = "") -> Iterator[tuple[str, Param]]:
        """Every leaf parameter as (dotted path, parameter), depth first in declaration order."""
        for name, p in self._params.items():
            path = prefix + name
            if isinstance(p, Space):
                yield from p.params(path + ".")
            else:
                yield path, p

    # -- building configurations
    def build(self, choose: Callable[[str, Param], Any], prefix: str = "") -> dict:
        """A configuration whose every active leaf value is ``choose(path, param)``, asked in dependency order.

        This is how strategies that decide parameter by parameter (an RL controller, Optuna's define-by-run TPE)
        produce configurations with conditionals handled: a parameter is asked only once the siblings that
        control it are decided, and only if it is active.
        """
        values: dict[str, Any] = {}
        for name in self._order:
            p = self._params[name]
            if not self._active(name, values):
                continue
            if isinstance(p, Space):
                values[name] = p.build(choose, prefix + name + ".")
            else:
                values[name] = p.canonical(choose(prefix + name, p), prefix + name)
        return {n: values[n] for n in self._params if n in values}

    def sample(self, rng: np.random.Generator | int) -> dict:
        """A random configuration: every active parameter independently uniform (log-uniform with ``log``).
        ``rng``: a numpy Generator, or an int seeding one."""
        rng = as_generator(rng)
        if not self._conditional():  # what ``build`` does, without its dependency bookkeeping (same draws)
            return {name: p.sample(rng) if isinstance(p, Space) else p.canonical(p.sample(rng), name)
                    for name, p in self._params.items()}
        return self.build(lambda _path, p: p.sample(rng))

    def _complete(self, partial: Mapping[str, Any], rng: np.random.Generator) -> dict:
        values: dict[str, Any] = {}
        for name in self._order:
            p = self._params[name]
            if not self._active(name, values):
                continue
            if name in partial:
                values[name] = p._complete(partial[name], rng) if isinstance(p, Space) else partial[name]
            else:
                values[name] = p.sample(rng)
        return {n: values[n] for n in self._params if n in values}

    def _conditional(self) -> bool:
        """Whether any parameter here or in a nested space has a condition (cached: spaces are not mutated)."""
        if self._has_conds is None:
            self._has_conds = bool(self._conds) or any(
                isinstance(p, Space) and p._conditional() for p in self._params.values())
        return self._has_conds

    def _mutable(self, config: Mapping[str, Any]) -> list[tuple[tuple, Param]]:
        if not self._conditional():  # every parameter is always present: one list for all, read from the space
            if self._mutable_all is None:  # (not from a configuration, which may be partial)
                self._mutable_all = self._mutable_of(None, ())
            return self._mutable_all
        return self._mutable_of(config, ())

    def _mutable_of(self, config: Mapping[str, Any] | None, prefix: tuple) -> list[tuple[tuple, Param]]:
        """The leaves with more than one value that ``config`` holds (``None``: every leaf of the space)."""
        out = []
        for name, p in self._params.items():
            if config is not None and name not in config:
                continue
            if isinstance(p, Space):
                out.extend(p._mutable_of(None if config is None else config[name], prefix + (name,)))
            elif p.cardinality() > 1:
                out.append((prefix + (name,), p))
        return out

    def mutate(self, config: Mapping[str, Any], rng: np.random.Generator | int, validated: bool = False) -> dict:
        """A configuration differing from ``config`` in exactly one active parameter, chosen uniformly.

        Parameters that the change activates are sampled; those it deactivates disappear. A space with a single
        configuration has nothing to change: its configuration is returned. ``validated=True`` says ``config``
        is already canonical (it came from this space's ``validate``, ``sample`` or ``mutate``), which skips
        checking it again: a model-based strategy mutates thousands of candidates per proposal. The result is
        the same either way.
        """
        if not validated:
            rng = as_generator(rng)
            config = self.validate(config)
        cands = self._mutable(config)
        if not cands:
            return _copy(config) if validated else config
        path, p = cands[int(rng.integers(len(cands)))]
        new = _copy(config)
        d = new
        for n in path[:-1]:
            d = d[n]
        d[path[-1]] = p.mutate_value(d[path[-1]], rng)
        return self._complete(new, rng) if self._conditional() else new

    # -- checking and normalizing
    def canonical(self, value: Any, path: str) -> dict:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise UserInputError(f"{path or 'config'}: expected a dict of parameters, got {value!r}")
        prefix = path + "." if path else ""
        for k in value:
            if k not in self._params:
                raise UserInputError(f"{prefix}{k}: no such parameter" + did_you_mean(str(k), self._params))
        values: dict[str, Any] = {}
        for name in self._order:
            p = self._params[name]
            active = self._active(name, values)
            if active and name not in value:
                raise UserInputError(f"{prefix}{name}: missing (the parameter is active)")
            if not active and name in value:
                conds = ", ".join(f"{s} in {list(a)!r}" for s, a in self._conds[name].items())
                raise UserInputError(f"{prefix}{name}: present but inactive (it exists only when {conds})")
            if active:
                values[name] = p.canonical(value[name], prefix + name)
        return {n: values[n] for n in self._params if n in values}

    def validate(self, config: Mapping[str, Any]) -> dict:
        """The canonical form of ``config`` (declaration order, values normalized), or a ``UserInputError``
        naming the offending parameter's path (``block1.kernel: 4 is not one of [3, 5]``)."""
        return self.canonical(config, "")

    def key(self, config: Mapping[str, Any]) -> str:
        """Stable identity of a configuration: sha256 of its canonical JSON (sorted keys, normalized values).

        ``1`` and ``1.0`` of a choice, ``3`` and ``3.0`` of an int give the same key; JSON floats print as the
        shortest repr, so the hash is the same in every process and Python version.
        """
        return hashlib.sha256(_canonical_json(self.validate(config)).encode("ascii")).hexdigest()

    # -- encoding for model-based strategies
    def _layout(self) -> list[tuple[tuple, Param, bool, int]]:
        if self._layout_cache is None:
            out: list = []
            offset = 0

            def walk(space: Space, prefix: tuple, conditional: bool) -> None:
                nonlocal offset
                for name, p in space._params.items():
                    cond = conditional or name in space._conds
                    if isinstance(p, Space):
                        walk(p, prefix + (name,), cond)
                    else:
                        out.append((prefix + (name,), p, cond, offset))
                        offset += p.width + (1 if cond else 0)

            walk(self, (), False)
            self._layout_cache = out
            self._dimension = offset
        return self._layout_cache

    def leaf_columns(self) -> list[tuple[str, int, int]]:
        """(dotted path, start, stop) of each leaf parameter's block in ``encode`` ("active" bit included), in
        ``params()`` order: for models that weigh parameters separately (the default strategy's relevances)."""
        return [(".".join(path), off, off + p.width + (1 if cond else 0)) for path, p, cond, off in self._layout()]

    @property
    def dimension(self) -> int:
        """Length of every ``encode`` vector."""
        self._layout()
        return self._dimension

    def encode(self, config: Mapping[str, Any], validated: bool = False) -> np.ndarray:
        """A float32 vector of length ``dimension``: one-hot choices, numbers in [0, 1] (log-scaled with
        ``log``), and for each conditional parameter a trailing "active" bit (its block stays zero when inactive).
        ``config`` is validated first (a value not in a choice set the previous parameter's last slot, an active
        parameter left out encoded as inactive: an outside check) unless ``validated=True`` says it came from
        this space's ``validate``, ``sample`` or ``mutate``, as a strategy's thousands of candidates do."""
        if not validated:
            config = self.validate(config)
        out = np.zeros(self.dimension, dtype=np.float32)
        for path, p, cond, offset in self._layout():
            d: Any = config
            for n in path:
                d = d.get(n, _MISSING) if type(d) is dict or isinstance(d, Mapping) else _MISSING
                if d is _MISSING:
                    break
            if d is _MISSING:
                continue
            p.encode_into(d, out, offset)
            if cond:
                out[offset + p.width] = 1.0
        return out

    # -- size and enumeration
    def cardinality(self) -> float:
        return self.size()

    def size(self) -> float:
        """The number of distinct configurations (conditionals counted exactly); ``math.inf`` with a
        continuous parameter.

        A pass over the parameters in dependency order keeping, per assignment of the controllers that a later
        parameter still depends on, how many partial configurations lead to it (no recursion: a recursion per
        parameter failed at ~1,000 parameters). A controller's values no condition names behave alike and are
        counted as one class (an Int controller of 0..10^9 was walked value by value, for hours)."""
        if self._size_cache is None:
            self._size_cache = self._count()
        return self._size_cache

    def _count(self) -> float:
        order = self._counting_order()
        classes = {c: self._value_classes(c, self._params[c]) for c in self._controllers}
        last_use: dict[str, int] = {}
        for i, name in enumerate(order):
            for sib in self._conds.get(name, {}):
                last_use[sib] = i
        states: dict[str, tuple[tuple, float]] = {"[]": ((), 1)}
        for i, name in enumerate(order):
            p = self._params[name]
            conds = self._conds.get(name)
            controller = name in self._controllers
            closing = any(j == i for j in last_use.values())  # a controller's last dependent: the keys change
            c = None if controller else p.cardinality()
            nxt: dict[str, tuple[tuple, float]] = {}

            def add(assigned: tuple, n: float) -> None:
                kept = tuple((k, v) for k, v in assigned if last_use.get(k, -1) > i)
                key = _canonical_json([[k, 1] if v is _OTHER else [k, 0, _plain(v)] for k, v in kept])
                nxt[key] = (kept, nxt[key][1] + n if key in nxt else n)

            for key, (assigned, n) in states.items():
                active = not conds or self._active(name, dict(assigned))
                if active and controller:
                    for v, mult in classes[name]:
                        add(assigned + ((name, v),), n * mult)
                    continue
                if active and c == math.inf:
                    return math.inf
                m = n * c if active else n
                if closing:
                    add(assigned, m)
                else:  # the same controllers stay open: the same key (most steps; ~10^6 JSON keys on a wide star)
                    nxt[key] = (assigned, nxt[key][1] + m if key in nxt else m)
            states = nxt
        return sum(n for _, n in states.values())

    def _counting_order(self) -> list[str]:
        """A dependency order placing each parameter right after its last controller (Kahn's algorithm with a
        stack), so that ``size`` holds few controllers open at once: in declaration order, 200 choices each
        controlling one parameter declared after all of them held 2^200 assignments."""
        indegree = {n: len(self._conds.get(n, {})) for n in self._params}
        dependents: dict[str, list[str]] = {n: [] for n in self._params}
        for n, conds in self._conds.items():
            for sib in conds:
                dependents[sib].append(n)
        stack = [n for n in reversed(list(self._params)) if not indegree[n]]
        order = []
        while stack:
            n = stack.pop()
            order.append(n)
            for d in reversed(dependents[n]):
                indegree[d] -= 1
                if not indegree[d]:
                    stack.append(d)
        return order

    def _value_classes(self, name: str, p: Param) -> list[tuple[Any, int]]:
        """(value, multiplicity) covering the domain of the controller ``name``: each value a condition names,
        then the rest as one class (``_OTHER``, which no condition holds for) with its count."""
        named = [a for c in self._conds.values() for a in c.get(name, ())]
        if isinstance(p, Choice):
            dom = list(p.values)
            hit = [v for v in dom if any(_same(v, a) for a in named)]
            rest = len(dom) - len(hit)
        else:  # an Int
            hit = sorted({int(a) for a in named})  # canonical: in-range integers (the constructor checked them)
            rest = int(p.high) - int(p.low) + 1 - len(hit)
        return [(v, 1) for v in hit] + ([(_OTHER, rest)] if rest > 0 else [])

    def enumerate(self) -> Iterator[dict]:
        """Every configuration (finite spaces only), in a fixed order."""
        if self.size() == math.inf:
            raise UserInputError("the space has a continuous parameter; it cannot be enumerated")
        return self._enumerated()

    def _enumerated(self) -> Iterator[dict]:
        # depth first in dependency order with an explicit stack (a recursion per parameter failed at ~1,000)
        order, values = self._order, {}
        if not order:
            yield {}
            return

        def domain(name: str) -> Iterator[Any]:
            p = self._params[name]
            if not self._active(name, values):
                return iter((_MISSING,))
            if isinstance(p, Space):
                return p.enumerate()
            if isinstance(p, Choice):
                return iter(p.values)
            if isinstance(p, Int):
                return iter(range(p.low, p.high + 1))
            return iter((p.low,))  # a Float with low == high

        stack = [domain(order[0])]
        while stack:
            name = order[len(stack) - 1]
            v = next(stack[-1], _END)
            if v is _END:
                stack.pop()
                values.pop(name, None)
                continue
            if v is _MISSING:
                values.pop(name, None)
            else:
                values[name] = v
            if len(stack) == len(order):
                yield {n: values[n] for n in self._params if n in values}
            else:
                stack.append(domain(order[len(stack)]))

    # -- JSON
    def to_json(self) -> dict:
        """The documented JSON form (see the module docstring); ``Space.from_json(s.to_json()) == s``."""
        return self._when_json({"type": "space", "params": {n: p.to_json() for n, p in self._params.items()}})

    @staticmethod
    def from_json(data: Any, path: str = "space") -> "Space":
        """A space from its JSON form; a malformed one raises ``UserInputError`` naming the JSON path."""
        if isinstance(data, (str, bytes)):  # the error quoted the whole text back (an outside check)
            raise UserInputError(f"{path}: Space.from_json takes the parsed JSON (json.load(f)), not its text "
                                 f"({len(data):,} {'bytes' if isinstance(data, bytes) else 'characters'})")
        p = _param_from_json(data, path)
        if not isinstance(p, Space):
            raise UserInputError(f"{path}: expected {{\"type\": \"space\", \"params\": {{...}}}}, got type {p.kind!r}")
        check_root(p, path)
        return p

    def __repr__(self) -> str:
        inner = ", ".join(f"{n!r}: {p!r}" for n, p in self._params.items())
        return f"Space({{{inner}}}{', when=' + repr(self.when) if self.when else ''})"


def check_root(space: Space, path: str = "space") -> None:
    """Refuse a ``when`` on the space a search runs on: it has no siblings to be conditioned on, and was accepted,
    kept in its JSON and ignored in sampling (an outside check)."""
    if space.when:
        raise UserInputError(f"{path}.when: the top-level space has no siblings to be conditioned on; a \"when\" "
                             "belongs to a parameter or a nested space")


_FIELDS = {"choice": {"type", "values", "when"}, "int": {"type", "low", "high", "log", "when"},
           "float": {"type", "low", "high", "log", "when"}, "space": {"type", "params", "when"}}


def _param_from_json(data: Any, path: str) -> Param:
    if not isinstance(data, Mapping):
        raise UserInputError(f"{path}: expected an object with a \"type\", got {data!r}")
    kind = data.get("type", _MISSING)
    if kind is _MISSING:
        raise UserInputError(f"{path}: missing \"type\" (one of {sorted(_FIELDS)})")
    if kind not in _FIELDS:
        raise UserInputError(f"{path}.type: unknown type {kind!r}" + did_you_mean(str(kind), _FIELDS)
                             + f"; expected one of {sorted(_FIELDS)}")
    for k in data:
        if k not in _FIELDS[kind]:
            raise UserInputError(f"{path}.{k}: unknown field for a {kind}" + did_you_mean(str(k), _FIELDS[kind]))
    when = data.get("when")
    if when is not None and not isinstance(when, Mapping):
        raise UserInputError(f"{path}.when: expected an object {{sibling: value or [values]}}")
    try:
        if kind == "choice":
            if "values" not in data:
                raise UserInputError("missing \"values\"")
            if not isinstance(data["values"], list):
                raise UserInputError("\"values\" must be a list")
            return Choice(data["values"], when=when)
        if kind in ("int", "float"):
            for f in ("low", "high"):
                if f not in data:
                    raise UserInputError(f"missing \"{f}\"")
            cls = Int if kind == "int" else Float
            return cls(data["low"], data["high"], log=data.get("log", False), when=when)
    except UserInputError as e:
        raise UserInputError(f"{path}: {e}") from None
    params = data.get("params", _MISSING)
    if not isinstance(params, Mapping):
        raise UserInputError(f"{path}.params: expected an object {{name: parameter}}")
    built = {}
    for name, sub in params.items():
        built[name] = _param_from_json(sub, f"{path}.params.{name}")
    try:
        return Space(built, when=when)
    except UserInputError as e:
        name, dot, rest = str(e).partition(".when")
        if dot and name in built:  # a parameter's condition: name its JSON path ("space.params.a.when")
            raise UserInputError(f"{path}.params.{name}.when{rest}") from None
        raise UserInputError(f"{path}: {e}") from None


def product(a: Space, b: Space, names: tuple[str, str] = ("nn", "accel")) -> Space:
    """The joint space of ``a`` and ``b``: ``Space({names[0]: a, names[1]: b})`` (e.g. NN x accelerator)."""
    if not isinstance(a, Space) or not isinstance(b, Space):
        raise UserInputError("product(a, b): both must be Space objects")
    if len(names) != 2 or names[0] == names[1]:
        raise UserInputError(f"product: names={names!r} must be two different names")
    return Space({names[0]: a, names[1]: b})
