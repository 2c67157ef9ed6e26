"""High-volume mode: millions of vectors through a unit, generated and checked in bulk.

The cocotb benches (bench.py) check the stream protocol (idle gaps, backpressure, reset) but
pay Python for every cycle. Here the unit runs in the plain `$readmemh` testbench of
`rtn_hw.flow.testbench` instead (`i.valid` always high, `o.ready` always high, every
handshake logged with its cycle), compiled once, and run once per chunk of vectors:

* stimulus comes from the unit's bench (`units.<unit>.Bench.volume`, its random mix, or for
  fp32 the TestFloat-style special values), drawn from `[seed, chunk]` so that a chunk
  replays on its own; payloads are packed into byte rows and written as one hex file;
* the golden model computes every expected output of the chunk in NumPy, and the logged
  outputs are compared with them as one array of hex strings (an X shows as a mismatch);
* each chunk must give exactly one output per input, in one-per-cycle order, each with the
  sidecar's latency.

`run(unit, params, vectors=..., seed=...)` returns one summary row (summary.py) and raises
`SimulationFailed` with the first mismatches described as the scoreboard does (inputs,
expected and actual values, seed, chunk). Units with side-stream loads (thresholds, weights)
raise `Unsupported`: the plain testbench leaves those streams idle.
"""

import math
import time

import numpy as np

from rtn_hw import tools
from rtn_hw.files import write_if_changed
from rtn_hw.flow import testbench as plain

import units
from runner import BUILD, SimulationFailed, config_id, export
from sidecar import Sidecar
from trits import length

__all__ = ["run", "chunk_size", "hex_rows", "Unsupported"]

# Hex text per chunk: about 64 MB of input bits, at most 100,000 vectors.
CHUNK_BITS = 1 << 26
MAX_CHUNK = 100_000
SHOWN = 10


def chunk_size(width, vectors):
    """Vectors per simulator run for an input payload of `width` bits."""
    return max(1, min(vectors, MAX_CHUNK, CHUNK_BITS // max(1, width)))


def hex_rows(rows, width):
    """Byte rows (n, bytes), least significant byte first → (n,) hex strings of
    ceil(width / 4) digits, as `$readmemh` reads them and `%h` prints them."""
    n, size = rows.shape
    digits = max(1, -(-width // 4))
    text = np.ascontiguousarray(rows[:, ::-1]).tobytes().hex().encode()
    chars = np.frombuffer(text, dtype="S1").reshape(n, 2 * size)[:, 2 * size - digits:]
    return np.ascontiguousarray(chars).view(f"S{digits}").reshape(n)


class _Bulk:
    """A payload whose `pack` gives byte rows: the unit benches pack as usual, in bulk."""

    def __init__(self, payload):
        self.payload = payload

    def pack(self, columns, count):
        return self.payload.pack_bytes(columns, count)

    def __getattr__(self, name):
        return getattr(self.payload, name)


def _bench(sidecar, seed, chunk, sparsity):
    bench = units.load(sidecar, np.random.default_rng([seed, 7, chunk]), sparsity)
    bench.i, bench.o = _Bulk(bench.i), _Bulk(bench.o)
    return bench


class Unsupported(ValueError):
    """The configuration cannot run in this mode (the message says why)."""


def _unsupported(sidecar, name):
    extra = sorted(set(sidecar.streams) - {"i", "o"})
    if extra:
        return (f"{name} loads {', '.join(extra)} on side streams, which the plain testbench "
                f"leaves idle (the cocotb bench covers it)")
    return None


def _parse_events(path):
    """events.txt → (input cycles, output cycles, output hex strings as bytes)."""
    lines = path.read_bytes().split(b"\n")
    ins = np.array([int(line[2:]) for line in lines if line[:1] == b"i"], dtype=np.int64)
    outs = [line.split() for line in lines if line[:1] == b"o"]
    cycles = np.array([int(o[1]) for o in outs], dtype=np.int64)
    values = np.array([o[2].lower() for o in outs] or [b""], dtype="S")[:len(outs)]
    return ins, cycles, values


def _describe(bench, stim, k, want, got, chunk, index, seed):
    as_int = lambda text: int(text, 16) if all(c in b"0123456789abcdef" for c in text) else None
    actual = as_int(got)
    return "\n".join([
        f"vector {index} (chunk {chunk}, seed {seed}, replay with SEED={seed}):",
        f"  inputs:   {bench.describe(stim, k)}",
        f"  expected: {bench.show(int(want, 16))}",
        f"  actual:   {bench.show(actual) if actual is not None else got.decode()}"])


def run(unit, params, *, vectors, seed, simulator="verilator", sparsity=0.5, fault=None):
    """Stream `vectors` (rounded up to whole chunks) through the unit; return a summary row.

    `fault="corrupt:K"` flips every bit of input K after the golden outputs are computed (so
    tests can show that a wrong output is caught)."""
    verilog, sidecar_path, exported = export(unit, params)
    sidecar = Sidecar(sidecar_path)
    name = config_id(unit, params)
    reason = _unsupported(sidecar, name)
    if reason:
        raise Unsupported(reason)
    folder = BUILD / "volume" / simulator / name
    folder.mkdir(parents=True, exist_ok=True)
    width_in = sidecar.stream("i").payload.width
    width_out = sidecar.stream("o").payload.width
    size = chunk_size(width_in, vectors)
    chunks = math.ceil(vectors / size)
    latency = sidecar.latency
    write_if_changed(folder / "dut.v", verilog.read_text())
    write_if_changed(folder / "tb.v", plain.testbench(
        exported["ports"], module=exported["module"], count=size,
        timeout_cycles=2 * size + 100 * (latency + 10)))

    began = time.perf_counter()
    flags = tools.VERILATOR_SPLIT if simulator == "verilator" else ()
    command, env = plain.build(folder, ["tb.v", "dut.v"], simulator=simulator, flags=flags)
    build_s = time.perf_counter() - began
    times = {"generate": 0.0, "simulate": 0.0, "check": 0.0}
    problems, wrong, total, cycles = [], 0, 0, 0
    for chunk in range(chunks):
        t0 = time.perf_counter()
        bench = _bench(sidecar, seed, chunk, sparsity)
        stim = bench.volume(size)
        rows = bench.inputs(stim)
        expected = hex_rows(bench.expected(stim), width_out)
        if fault and chunk == 0:
            kind, _, index = fault.partition(":")
            if kind != "corrupt":
                raise ValueError(f"fault {fault!r}: expected corrupt:K")
            rows[int(index)] ^= 0xFF
        lines = hex_rows(rows, width_in)
        (folder / plain.INPUTS).write_bytes(b"\n".join(lines.tolist()) + b"\n")
        t1 = time.perf_counter()
        plain.run(folder, command, env, simulator)
        t2 = time.perf_counter()
        ins, out_cycles, got = _parse_events(folder / plain.EVENTS)
        found, mismatches = _check(bench, stim, expected, ins, out_cycles, got, latency,
                                   chunk=chunk, base=chunk * size, seed=seed, label=name)
        problems += found
        wrong += mismatches
        total += length(stim)
        cycles += int(out_cycles[-1] - ins[0] + 1) if len(ins) and len(out_cycles) else 0
        times["generate"] += t1 - t0
        times["simulate"] += t2 - t1
        times["check"] += time.perf_counter() - t2
        if problems:
            break
    run_s = time.perf_counter() - began - build_s
    row = {
        "unit": unit, "params": ",".join(f"{k}={v}" for k, v in params.items()),
        "simulator": simulator, "bench": "volume", "seed": seed, "vectors": total,
        "mismatches": wrong,
        "cycles": cycles, "latency": latency, "measured_latency": latency if not problems
        else None, "vectors_per_s": round(total / run_s, 1) if run_s > 0 else None,
        "build_s": round(build_s, 2), "run_s": round(run_s, 2), "chunks": chunks,
        "chunk": size, **{f"{k}_s": round(v, 2) for k, v in times.items()},
    }
    if problems:
        raise SimulationFailed(f"{name} on {simulator} (volume, seed {seed}; replay with "
                               f"SEED={seed} VECTORS={vectors}):\n" + "\n".join(problems))
    return row


def _check(bench, stim, expected, ins, out_cycles, got, latency, *, chunk, base, seed,
           label):
    """(problems, mismatch count) of one chunk: counts, timing, then values."""
    count = len(expected)
    problems = []
    if len(ins) != count:
        problems.append(f"{label}: {len(ins)} of {count} inputs taken in chunk {chunk}")
    if len(got) != count:
        problems.append(f"{label}: {len(got)} outputs for {count} inputs in chunk {chunk} "
                        f"({'lost' if len(got) < count else 'duplicated or spurious'})")
    n = min(len(ins), len(got), count)
    if n and not np.all(out_cycles[:n] - ins[:n] == latency):
        bad = np.flatnonzero(out_cycles[:n] - ins[:n] != latency)[0]
        problems.append(f"{label}: vector {base + bad} left after "
                        f"{out_cycles[bad] - ins[bad]} cycles, the sidecar says {latency}")
    if len(ins) and ins[-1] - ins[0] != len(ins) - 1:
        problems.append(f"{label}: {len(ins)} inputs took {ins[-1] - ins[0] + 1} cycles, not "
                        f"one per cycle")
    wrong = np.flatnonzero(got[:n] != expected[:n])
    for k in wrong[:SHOWN]:
        problems.append(_describe(bench, stim, k, expected[k], got[k], chunk, base + k, seed))
    if len(wrong) > SHOWN:
        problems.append(f"... {len(wrong)} mismatches in chunk {chunk} (first {SHOWN} shown)")
    return problems, len(wrong)
