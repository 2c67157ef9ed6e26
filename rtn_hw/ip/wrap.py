"""A built unit wrapped for AXI4-Stream, and what the export says about it: the sidecar's
`axis` entry and port list, and the parameters as Verilog `localparam`s."""

import re

from amaranth.hdl import Shape
from amaranth.lib import data

from .axis import AxisWrapper, WrapError, check_wrappable, payload_shape

__all__ = ["AxisWrapper", "WrapError", "wrap", "describe", "port_list", "localparams",
           "with_localparams", "FRAMED_UNITS"]

# Units whose input is an array sent over several beats: at most this many elements per beat
# (the largest divisor of the element count not above it). The engine: pixels, one per byte.
FRAMED_UNITS = {"network_engine": 8}


def _per_beat(length, most):
    return max(k for k in range(1, most + 1) if length % k == 0)


def wrap(unit_name, component):
    """The `AxisWrapper` of a built unit; a `WrapError` if it cannot be wrapped."""
    check_wrappable(component)
    most = FRAMED_UNITS.get(unit_name)
    if most is None:
        return AxisWrapper(component)
    return AxisWrapper(component,
                       per_beat=_per_beat(payload_shape(component, "i").length, most))


def _leaves_of(shape, leaves):
    return list(leaves(shape)) if isinstance(shape, data.Layout) else []


def _fields(leaves, width, signed=False):
    """A layout's leaves, or one unnamed field for a plain number."""
    return [{"name": n, "offset": o, "width": w, "signed": s} for n, o, w, s in leaves] or [
        {"name": "", "offset": 0, "width": width, "signed": signed}]


def _single(shape, tdata_width, leaves):
    bits = Shape.cast(shape).width
    return {"tdata_width": tdata_width, "payload_width": bits, "padding": "ignored",
            "beats": 1, "tlast": False,
            "fields": _fields(_leaves_of(shape, leaves), bits, Shape.cast(shape).signed)}


def describe(wrapper, leaves):
    """The sidecar's `axis` entry: per interface the tdata width, beats, tlast, and where each
    field of the unit's payload sits in tdata (`leaves(shape)` gives a layout's leaf fields
    as (name, offset, width, signed))."""
    i_shape, o_shape = payload_shape(wrapper.unit, "i"), payload_shape(wrapper.unit, "o")
    o_bits = Shape.cast(o_shape).width
    m_axis = {
        "tdata_width": len(wrapper.m_axis_tdata),
        "payload_width": o_bits,
        "padding": ("sign-extended" if not isinstance(o_shape, data.Layout)
                    and Shape.cast(o_shape).signed else "zero"),
        "beats": 1,
        "tlast": wrapper.framed,
        "fields": _fields(_leaves_of(o_shape, leaves), o_bits, Shape.cast(o_shape).signed),
    }
    if not wrapper.framed:
        s_axis = _single(i_shape, len(wrapper.s_axis_tdata), leaves)
    else:
        elem = Shape.cast(i_shape.elem_shape)
        stride = 8 * wrapper.element_bytes
        s_axis = {
            "tdata_width": len(wrapper.s_axis_tdata),
            "payload_width": Shape.cast(i_shape).width,
            "padding": "ignored",
            "beats": wrapper.beats,
            "tlast": True,
            "elements": i_shape.length,
            "elements_per_beat": wrapper.per_beat,
            "element_bytes": wrapper.element_bytes,
            # Element e travels in beat e // per_beat, at this offset of that beat's tdata.
            "fields": [{"name": f"[{k}]", "offset": k * stride, "width": elem.width,
                        "signed": elem.signed} for k in range(wrapper.per_beat)],
        }
    result = {"s_axis": s_axis}
    for name in wrapper.side_streams:
        result[f"s_axis_{name}"] = _single(payload_shape(wrapper.unit, name),
                                           len(getattr(wrapper, f"s_axis_{name}_tdata")), leaves)
    result["m_axis"] = m_axis
    return result


_ROLES = ("tdata", "tvalid", "tready", "tlast")


def _port_order(name):
    """aclk, aresetn, s_axis, the side streams' s_axis_<name> (by name), m_axis; in each
    interface tdata, tvalid, tready, tlast."""
    if name in ("aclk", "aresetn"):
        return (0, name, 0)
    interface, _, role = name.rpartition("_")
    rank = 1 if interface == "s_axis" else 3 if interface == "m_axis" else 2
    return (rank, interface, _ROLES.index(role))


def port_list(module_ports):
    """Sidecar port entries of the wrapper's Verilog ports ({name: (direction, width)})."""
    roles = {"aclk": ("clock", None), "aresetn": ("reset_n", None)}
    ports = []
    for name in sorted(module_ports, key=_port_order):
        direction, width = module_ports[name]
        role, interface = roles.get(name, (None, None))
        if role is None:
            interface, _, role = name.rpartition("_")
        ports.append({"name": name, "direction": direction, "width": width, "signed": False,
                      "role": role, "interface": interface})
    return ports


def _verilog_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def localparams(wrapper, shown):
    """{NAME: value}: the unit's resolved parameters (`shown`, JSON values; none left out)
    upper-cased, then the interface widths and timing."""
    params = {name.upper(): value for name, value in shown.items() if value is not None}
    params.update({"S_AXIS_TDATA_WIDTH": len(wrapper.s_axis_tdata),
                   "M_AXIS_TDATA_WIDTH": len(wrapper.m_axis_tdata),
                   "BEATS_PER_FRAME": wrapper.beats, "LATENCY": wrapper.latency})
    return params


def with_localparams(text, module, params, banner):
    """The Verilog with a header comment (`banner` lines and the parameters) and the
    parameters as `localparam`s at the top of `module`'s body, for readers and tools."""
    header = re.search(rf"^module {re.escape(module)}\(.*?\);\n", text, re.M | re.S)
    if header is None:
        raise ValueError(f"module {module} not found in the Verilog")
    decls = "".join(f"  localparam {name} = {_verilog_value(value)};\n"
                    for name, value in params.items())
    comment = "".join(f"// {line}\n" for line in banner)
    comment += "// Parameters:\n" + "".join(f"//   {name} = {_verilog_value(value)}\n"
                                             for name, value in params.items())
    body = text[:header.end()] + decls + text[header.end():]
    return comment + body
