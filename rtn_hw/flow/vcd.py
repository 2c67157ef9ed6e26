"""Toggle counts from a VCD trace, streaming: the activity the power model prices.

`parse_vcd` counts 0↔1 changes per bit of every signal in a time window; a change from or to
x/z is not a toggle. Icarus and Verilator traces both parse (their scopes differ: `tb.dut` and
`TOP.tb.dut`).
"""

import dataclasses
import math
import re

__all__ = ["VcdToggles", "parse_vcd", "UNITS_PS"]


@dataclasses.dataclass
class VcdToggles:
    """Per-signal toggle counts from a VCD: `toggles[path]` lists counts per bit, LSB first."""
    timescale_ps: float
    widths: dict
    toggles: dict
    end_time: int


UNITS_PS = {"s": 1e12, "ms": 1e9, "us": 1e6, "ns": 1e3, "ps": 1.0, "fs": 1e-3}


def parse_vcd(path, *, scope=None, start=None, end=None, keep=None):
    """Count 0↔1 changes per bit of every signal in a VCD, streaming.

    Only changes at times t with start < t <= end (in the file's time units; None = open)
    count; a change from or to x/z is not a toggle. `scope` (e.g. "tb.dut") keeps only the
    signals declared directly in that scope, named without it. Bus names drop their range.
    `keep`, a predicate on those names, drops the others before any change is counted."""
    ids = {}            # id code → list of signal paths
    widths = {}
    stack = []
    timescale = 1.0
    with open(path) as file:
        lines = iter(file)
        header = []
        for line in lines:
            header.append(line)
            if "$enddefinitions" in line:
                break
        text = " ".join(header)
        match = re.search(r"\$timescale\s+(\d+)\s*([a-z]+)\s+\$end", text)
        if match:
            timescale = int(match[1]) * UNITS_PS[match[2]]
        for token in re.finditer(r"\$(scope|upscope|var)\b(.*?)\$end", text, re.S):
            kind, body = token[1], token[2].split()
            if kind == "scope":
                stack.append(body[1])
            elif kind == "upscope":
                stack.pop()
            else:
                width, code, name = int(body[1]), body[2], body[3]
                where = ".".join(stack)
                if scope is not None:
                    if where != scope:
                        continue
                    path_ = name
                else:
                    path_ = f"{where}.{name}" if where else name
                if keep is not None and not keep(path_):
                    continue
                widths[path_] = width
                ids.setdefault(code, []).append(path_)
        counts = {code: [0] * widths[names[0]] for code, names in ids.items()}
        last = {}
        now = 0
        inside = start is None
        lo = -math.inf if start is None else start
        hi = math.inf if end is None else end
        for line in lines:
            c = line[:1]
            if c == "#":
                now = int(line[1:])
                inside = lo < now <= hi
            elif c in "01xzXZ":
                code = line[1:].rstrip("\n")
                if code in counts:
                    old = last.get(code)
                    last[code] = c
                    if inside and old is not None and old != c and c in "01" and old in "01":
                        counts[code][0] += 1
            elif c in "bB":
                value, code = line[1:].split()
                if code in counts:
                    old = last.get(code)
                    last[code] = value
                    if inside and old is not None and old != value:
                        _count_vector(counts[code], old, value)
    toggles = {}
    for code, names in ids.items():
        for name in names:
            toggles[name] = counts[code]
    return VcdToggles(timescale, widths, toggles, now)


def _count_vector(count, old, new):
    width = len(count)
    old = _extend(old, width)
    new = _extend(new, width)
    if "x" in old or "x" in new or "z" in old or "z" in new:
        for j in range(width):
            a, b = old[width - 1 - j], new[width - 1 - j]
            if a != b and a in "01" and b in "01":
                count[j] += 1
        return
    diff = int(old, 2) ^ int(new, 2)
    while diff:
        low = diff & -diff
        count[low.bit_length() - 1] += 1
        diff ^= low


def _extend(value, width):
    value = value.lower()
    if len(value) >= width:
        return value[-width:]
    pad = value[0] if value[0] in "xz" else "0"
    return pad * (width - len(value)) + value
