"""The JSON sidecar of an exported unit, and payload packing driven by it alone.

`rtn_hw.flow.verilog` writes, beside every Verilog file, a sidecar naming each port of the
module (`i__payload`, `i__valid`, ...), its role in a stream and, for payloads, every leaf
field with its bit offset, width and signedness. The benches pack inputs and unpack outputs
from that description only, so they test the Verilog as a vendor flow receives it, not the
Amaranth objects that produced it.

Packing is vectorized: a whole batch of vectors becomes one bit matrix, then one Python int
per vector (the value written to the flat port). Unpacking is per value (messages only).
"""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

__all__ = ["Field", "Payload", "Stream", "Sidecar"]


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    offset: int
    width: int
    signed: bool

    def get(self, value):
        raw = (value >> self.offset) & ((1 << self.width) - 1)
        if self.signed and raw >> (self.width - 1):
            raw -= 1 << self.width
        return raw


def _int_bits(values, width):
    """Integers (...,) → two's complement bits (..., width), LSB first, as uint8."""
    values = np.asarray(values)
    if values.dtype == object:
        raise TypeError("expected fixed-width integers, not Python objects")
    if width > 64:
        raise ValueError(f"an integer field of {width} bits needs a bit array")
    values = values.astype(np.int64).view(np.uint64)
    shifts = np.arange(width, dtype=np.uint64)
    return ((values[..., None] >> shifts) & np.uint64(1)).astype(np.uint8)


class Payload:
    """A payload port: its width and leaf fields (name → Field)."""

    def __init__(self, port):
        self.name = port["name"]
        self.width = port["width"]
        self.signed = port["signed"]
        leaves = port.get("fields") or [{"name": "", "offset": 0, "width": self.width,
                                          "signed": self.signed}]
        self.fields = {f["name"]: Field(f["name"], f["offset"], f["width"], f["signed"])
                       for f in leaves}

    def group(self, base):
        """The elements `base[0]`, `base[1]`, ... of an array field, in index order."""
        found = {}
        for name, field in self.fields.items():
            match = re.fullmatch(rf"{re.escape(base)}\[(\d+)\]", name)
            if match:
                found[int(match[1])] = field
        if not found:
            raise KeyError(f"{self.name} has no array field {base!r}")
        return [found[k] for k in range(len(found))]

    def pack(self, columns, count):
        """`count` flat payload ints from `columns`: {name: values}.

        A name is a leaf field (values: ints (count,), or bits (count, width) for wide planes)
        or an array field (values: ints (count, elements)). Every leaf must be covered."""
        packed = self.pack_bytes(columns, count)
        return [int.from_bytes(row.tobytes(), "little") for row in packed]

    def pack_bytes(self, columns, count):
        """As `pack`, but the payloads as a uint8 array (count, ceil(width / 8)), least
        significant byte first: for bulk files (volume.py), no Python int per vector."""
        size = -(-self.width // 8)
        bits = None
        aligned = np.zeros((count, size), dtype=np.uint8)
        covered = set()
        for name, values in columns.items():
            values = np.asarray(values)
            if name in self.fields:
                field = self.fields[name]
                if values.shape == (count, field.width) and values.dtype == bool:
                    block = values.astype(np.uint8)
                elif values.shape == (count,):
                    block = _int_bits(values, field.width)
                else:
                    raise ValueError(f"{self.name}.{name}: expected ({count},) ints or "
                                     f"({count}, {field.width}) bools, not {values.shape}")
                bits = np.zeros((count, self.width), np.uint8) if bits is None else bits
                bits[:, field.offset:field.offset + field.width] = block
                covered.add(name)
                continue
            elements = self.group(name)
            if values.shape != (count, len(elements)):
                raise ValueError(f"{self.name}.{name}: expected shape ({count}, "
                                 f"{len(elements)}), not {values.shape}")
            covered.update(field.name for field in elements)
            width, first = elements[0].width, elements[0].offset
            if width in (8, 16, 32, 64) and first % 8 == 0 and all(
                    f.offset == first + k * width for k, f in enumerate(elements)):
                # Whole bytes, elements back to back (fp32 and integer operands): copy the
                # little-endian bytes, with no bit matrix (8x the memory, and slow).
                raw = (values.astype(np.int64).view(np.uint64)
                       & np.uint64((1 << width) - 1)).astype(f"<u{width // 8}")
                start = first // 8
                aligned[:, start:start + raw.shape[1] * width // 8] = raw.view(np.uint8)
                continue
            all_bits = _int_bits(values, width)
            bits = np.zeros((count, self.width), np.uint8) if bits is None else bits
            for k, field in enumerate(elements):
                bits[:, field.offset:field.offset + field.width] = all_bits[:, k]
        missing = set(self.fields) - covered
        if missing:
            raise ValueError(f"{self.name}: no values for fields {sorted(missing)}")
        if bits is None:
            return aligned
        return np.packbits(bits, axis=1, bitorder="little") | aligned

    def unpack(self, value):
        """A flat payload int → {leaf name: int} (signed fields sign-extended)."""
        return {name: field.get(value) for name, field in self.fields.items()}

    def ints(self, value, base):
        """The elements of array field `base` of a flat payload int, as a list of ints."""
        return [field.get(value) for field in self.group(base)]


@dataclasses.dataclass(frozen=True)
class Stream:
    """The Verilog port names of one stream (`payload` may be None for a zero-width one)."""
    name: str
    payload: Payload | None
    valid: str
    ready: str
    direction: str       # "input": the bench drives valid and payload


class Sidecar:
    """A parsed sidecar: unit, resolved parameters, constructor arguments, latency, streams."""

    def __init__(self, path):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text(encoding="utf-8"))
        self.unit = self.data["unit"]
        self.module = self.data["module"]
        self.params = self.data["parameters"]["resolved"]
        self.arguments = self.data["arguments"]
        self.latency = int(self.data["latency"])
        self.ports = {p["name"]: p for p in self.data["ports"]}
        self.clock = next(p["name"] for p in self.data["ports"] if p["role"] == "clock")
        self.reset = next(p["name"] for p in self.data["ports"] if p["role"] == "reset")
        streams = {}
        for port in self.data["ports"]:
            if port["role"] in ("payload", "valid", "ready"):
                streams.setdefault(port["path"][0], {})[port["role"]] = port
        self.streams = {}
        for name, roles in streams.items():
            direction = roles["valid"]["direction"]
            payload = Payload(roles["payload"]) if "payload" in roles else None
            self.streams[name] = Stream(name, payload, roles["valid"]["name"],
                                        roles["ready"]["name"], direction)

    def stream(self, name):
        try:
            return self.streams[name]
        except KeyError:
            raise KeyError(f"{self.unit} has no stream {name!r}; it has "
                           f"{', '.join(self.streams)}") from None
