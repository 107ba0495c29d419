"""The accelerator's parameters as a search space: the simulator TOML's array, buffers and bandwidth.

``accelerator_space()`` searches ``rows``, ``cols``, ``dataflow``, the three on-chip buffer
sizes (``ifmap_kb``, ``filter_kb``, ``ofmap_kb``) and the DRAM bandwidth (``dram_bw_words``, words
per cycle for each stream); the defaults span edge to datacenter-sized arrays. ``accel_config(config,
base)`` turns a configuration into a dict in the simulator's TOML schema, with everything the space does
not search (clock, word size, vector lanes, energy, system) taken from ``base`` (an ``AccelConfig``, a
TOML dict or a TOML path; default: 1 GHz, 1-byte words), so ``graphmill.api.simulate(graph, dict)`` and
``AccelConfig`` accept it. A configuration whose buffers cannot hold one tile of its array is rejected by
the simulator's own validation (``UserInputError``): an evaluator sees it as a failed trial.
"""

from __future__ import annotations

from typing import Any, Sequence

from graphmill.search.space import Choice, Space

ARRAY_SIZES = (8, 16, 32, 64, 128)
DATAFLOWS = ("os", "ws", "is")
BUFFER_KB = (32, 64, 128, 256, 512, 1024)
BANDWIDTH_WORDS = (4, 8, 16, 32, 64)

#: the parameters the space searches (names of the configuration's keys), in TOML order
PARAMS = ("rows", "cols", "dataflow", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw_words")


def accelerator_space(*, rows: Sequence[int] = ARRAY_SIZES, cols: Sequence[int] = ARRAY_SIZES,
                      dataflow: Sequence[str] = DATAFLOWS, ifmap_kb: Sequence[float] = BUFFER_KB,
                      filter_kb: Sequence[float] = BUFFER_KB, ofmap_kb: Sequence[float] = BUFFER_KB,
                      dram_bw_words: Sequence[int] = BANDWIDTH_WORDS) -> Space:
    """A ``Space`` of accelerator parameters; each argument lists the values one parameter may take."""
    domains = dict(rows=rows, cols=cols, dataflow=dataflow, ifmap_kb=ifmap_kb, filter_kb=filter_kb,
                   ofmap_kb=ofmap_kb, dram_bw_words=dram_bw_words)
    return Space({name: Choice(list(values)) for name, values in domains.items()})


def _base_dict(base: Any) -> dict:
    """``base`` (None, an AccelConfig, a TOML-schema dict or a TOML path) as a TOML-schema dict."""
    if base is None:
        return {"name": "searched"}
    if isinstance(base, dict):
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    from graphmill.backends.simulator.config import AccelConfig, as_accel

    if not isinstance(base, AccelConfig):  # a TOML path: validated, then taken key for key
        import tomllib

        as_accel(base)
        from graphmill.util.files import TEXT_FILE_LIMIT, read_user_file

        return tomllib.loads(read_user_file(base, TEXT_FILE_LIMIT, "an accelerator config (TOML)").decode("utf-8"))
    c = base
    return {"name": c.name, "memory": {"word_bytes": c.word_bytes}, "clock": {"mhz": c.clock_mhz},
            **({"vector": {"lanes": c.vector_lanes}} if c.vector_lanes else {}),
            "energy": {"mac_pj": c.mac_pj, "sram_pj_per_word": c.sram_pj_per_word,
                       "dram_pj_per_word": c.dram_pj_per_word},
            "system": {"chips": c.chips, "link_bw_bytes_per_cycle": c.link_bw_bytes_per_cycle,
                       "link_latency_cycles": c.link_latency_cycles}}


#: the configuration keys ``accel_config`` takes over the base
SEARCHED_KEYS = ("rows", "cols", "dataflow", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw_words")
SEARCHED_FROM = "searched from "


def accel_config(config: dict, base: Any = None) -> dict:
    """The simulator's TOML-schema dict for an accelerator ``config`` (searched values override ``base``)."""
    d = _base_dict(base)
    array = dict(d.get("array", {}))
    memory = dict(d.get("memory", {}))
    for key in SEARCHED_KEYS[:3]:
        if key in config:
            array[key] = config[key]
    for key in SEARCHED_KEYS[3:6]:
        if key in config:
            memory[key] = config[key]
    if "dram_bw_words" in config:
        memory["dram_bw_words"] = config["dram_bw_words"]
        # one searched bandwidth for all three streams, which the DRAM interface then honours
        for key in ("ifmap_bw_words", "filter_bw_words", "ofmap_bw_words", "interface_bandwidth"):
            memory.pop(key, None)
    d["array"], d["memory"] = array, memory
    if any(key in config for key in SEARCHED_KEYS):  # the base's own name claimed a machine it is not (a trial's
        # accelerator in NAHAS's history.jsonl read "edge" with a 64x8 ws array: an outside check)
        d["name"] = point_name(d, "the default" if base is None else d.get("name") or "the default")
    return d


def point_name(accel: dict, base: str) -> str:
    """The name of a searched point (TOML-schema dict ``accel``) over the accelerator named ``base``:
    ``64x8 ws 64/64/64 KB 32 words/cycle (searched from edge)``, what is known of the array, buffers and DRAM
    bandwidth first (two points that differ anywhere the space searches have two names)."""
    array, memory = accel.get("array", {}), accel.get("memory", {})

    def num(v) -> str:
        return f"{v:g}" if isinstance(v, (int, float)) else str(v)

    parts = [f"{array['rows']}x{array['cols']}" if "rows" in array and "cols" in array else "",
             str(array.get("dataflow", "")),
             "/".join(num(memory[k]) for k in SEARCHED_KEYS[3:6]) + " KB"
             if all(k in memory for k in SEARCHED_KEYS[3:6]) else "",
             f"{num(memory['dram_bw_words'])} words/cycle" if "dram_bw_words" in memory else ""]
    return f"{' '.join(p for p in parts if p) or 'a point'} ({SEARCHED_FROM}{base})"


def clock_mhz(accel: dict) -> float:
    """The clock of a TOML-schema dict (the simulator's default, 1000 MHz, when it names none)."""
    return float(accel.get("clock", {}).get("mhz", 1000.0))
