"""IP-XACT (IEEE 1685-2014) component description of an AXI4-Stream wrapped unit.

Written as `component.xml` beside the Verilog, the name Vivado's IP catalog looks for. The
stream interfaces use the AXI4-Stream bus definition Vivado IP Integrator knows
(`xilinx.com:interface:axis:1.0`, abstraction `axis_rtl`); `aclk` and `aresetn` are clock and
reset interfaces (`xilinx.com:signal:clock:1.0` / `reset:1.0`) that name the streams they
clock and the reset's polarity, so IP Integrator connects them without questions. Elements
appear in the order the 2014 schema's sequences require. The same inputs give the same bytes.
"""

import xml.etree.ElementTree as ET

__all__ = ["NAMESPACE", "VENDOR", "LIBRARY", "BUS_TYPES", "component", "parse"]

NAMESPACE = "http://www.accellera.org/XMLSchema/IPXACT/1685-2014"
SCHEMA = f"{NAMESPACE} {NAMESPACE}/index.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
VENDOR, LIBRARY = "rtn-hw", "rtn_hw"

# Interface → (bus type VLNV, abstraction VLNV), each as (vendor, library, name, version).
BUS_TYPES = {
    "axis": (("xilinx.com", "interface", "axis", "1.0"),
             ("xilinx.com", "interface", "axis_rtl", "1.0")),
    "clock": (("xilinx.com", "signal", "clock", "1.0"),
              ("xilinx.com", "signal", "clock_rtl", "1.0")),
    "reset": (("xilinx.com", "signal", "reset", "1.0"),
              ("xilinx.com", "signal", "reset_rtl", "1.0")),
}


def _q(tag):
    return f"{{{NAMESPACE}}}{tag}"


def _sub(parent, tag, text=None, **attrs):
    element = ET.SubElement(parent, _q(tag), attrs)
    if text is not None:
        element.text = str(text)
    return element


def _vlnv(parent, tag, vlnv):
    vendor, library, name, version = vlnv
    return _sub(parent, tag, vendor=vendor, library=library, name=name, version=version)


def _parameter(parent, name, value, ident):
    # IP-XACT 2014 values are SystemVerilog expressions, typed: booleans as bits (as in the
    # Verilog's localparams), strings quoted.
    if isinstance(value, bool):
        kind, text = "bit", str(int(value))
    elif isinstance(value, int):
        kind, text = "longint", str(value)
    elif isinstance(value, float):
        kind, text = "real", repr(value)
    else:
        kind, text = "string", '"' + str(value).replace('"', "'") + '"'
    element = _sub(parent, "parameter", parameterId=ident, resolve="immediate", type=kind)
    _sub(element, "name", name)
    _sub(element, "value", text)


def _bus_interface(parent, name, kind, mode, maps, parameters=()):
    """`maps`: (logical port, physical port) pairs."""
    bus, abstraction = BUS_TYPES[kind]
    interface = _sub(parent, "busInterface")
    _sub(interface, "name", name)
    _vlnv(interface, "busType", bus)
    types = _sub(_sub(interface, "abstractionTypes"), "abstractionType")
    _vlnv(types, "abstractionRef", abstraction)
    port_maps = _sub(types, "portMaps")
    for logical, physical in maps:
        port_map = _sub(port_maps, "portMap")
        _sub(_sub(port_map, "logicalPort"), "name", logical)
        _sub(_sub(port_map, "physicalPort"), "name", physical)
    _sub(interface, mode)
    if parameters:
        block = _sub(interface, "parameters")
        for key, value in parameters:
            _parameter(block, key, value, f"BUSIFPARAM_VALUE.{name.upper()}.{key}")


def component(*, module, version, description, ports, localparams, files):
    """The component.xml text.

    `ports`: the sidecar's AXI port entries (name, direction, width, role, interface);
    `localparams`: {NAME: value}; `files`: [(file name relative to component.xml, IP-XACT
    file type)]."""
    ET.register_namespace("ipxact", NAMESPACE)
    ET.register_namespace("xsi", XSI)
    root = ET.Element(_q("component"), {f"{{{XSI}}}schemaLocation": SCHEMA})
    for tag, text in (("vendor", VENDOR), ("library", LIBRARY), ("name", module),
                      ("version", version)):
        _sub(root, tag, text)

    interfaces = {}
    for port in ports:
        if port["interface"]:
            interfaces.setdefault(port["interface"], []).append(port)
    buses = _sub(root, "busInterfaces")
    for name, members in interfaces.items():
        mode = "slave" if name.startswith("s_") else "master"
        _bus_interface(buses, name, "axis", mode,
                       [(p["role"].upper(), p["name"]) for p in members])
    _bus_interface(buses, "aclk", "clock", "slave", [("CLK", "aclk")],
                   [("ASSOCIATED_BUSIF", ":".join(interfaces)),
                    ("ASSOCIATED_RESET", "aresetn")])
    _bus_interface(buses, "aresetn", "reset", "slave", [("RST", "aresetn")],
                   [("POLARITY", "ACTIVE_LOW")])

    model = _sub(root, "model")
    view = _sub(_sub(model, "views"), "view")
    _sub(view, "name", "rtl")
    _sub(view, "envIdentifier", ":*:")
    _sub(view, "componentInstantiationRef", "verilog")
    instance = _sub(_sub(model, "instantiations"), "componentInstantiation")
    _sub(instance, "name", "verilog")
    _sub(instance, "language", "Verilog")
    _sub(instance, "moduleName", module)
    _sub(_sub(instance, "fileSetRef"), "localName", "sources")
    model_ports = _sub(model, "ports")
    for port in ports:
        element = _sub(model_ports, "port")
        _sub(element, "name", port["name"])
        wire = _sub(element, "wire")
        _sub(wire, "direction", "in" if port["direction"] == "input" else "out")
        if port["width"] > 1:
            vector = _sub(_sub(wire, "vectors"), "vector")
            _sub(vector, "left", port["width"] - 1)
            _sub(vector, "right", 0)

    file_set = _sub(_sub(root, "fileSets"), "fileSet")
    _sub(file_set, "name", "sources")
    for name, file_type in files:
        element = _sub(file_set, "file")
        _sub(element, "name", name)
        _sub(element, "fileType", file_type)

    _sub(root, "description", description)
    parameters = _sub(root, "parameters")
    for name, value in localparams.items():
        _parameter(parameters, name, value, f"PARAM_VALUE.{name}")
    ET.indent(root, space="  ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(root, encoding="unicode") + "\n")


def parse(text):
    """component.xml text → a plain dict (for tests and tools): name, bus interfaces with their
    bus type, mode and port maps, ports with direction and width, files and parameters."""
    root = ET.fromstring(text)
    if root.tag != _q("component"):
        raise ValueError(f"not an IP-XACT 1685-2014 component: root element {root.tag}")

    def prefixed(path):
        return "/".join(f"ipxact:{part}" for part in path.split("/"))

    def one(element, path):
        found = element.find(prefixed(path), {"ipxact": NAMESPACE})
        if found is None:
            raise ValueError(f"component.xml: missing {path} in {element.tag}")
        return found

    def all_(element, path):
        return element.findall(prefixed(path), {"ipxact": NAMESPACE})

    def vlnv(element):
        return tuple(element.get(key) for key in ("vendor", "library", "name", "version"))

    result = {tag: one(root, tag).text for tag in ("vendor", "library", "name", "version")}
    result["children"] = [child.tag.removeprefix(f"{{{NAMESPACE}}}") for child in root]
    result["bus_interfaces"] = {}
    for interface in all_(root, "busInterfaces/busInterface"):
        modes = [tag for tag in ("master", "slave") if interface.find(_q(tag)) is not None]
        types = one(interface, "abstractionTypes/abstractionType")
        result["bus_interfaces"][one(interface, "name").text] = {
            "bus_type": vlnv(one(interface, "busType")),
            "abstraction": vlnv(one(types, "abstractionRef")),
            "mode": modes,
            "port_maps": {one(m, "logicalPort/name").text: one(m, "physicalPort/name").text
                          for m in all_(types, "portMaps/portMap")},
            "parameters": {one(p, "name").text: one(p, "value").text
                           for p in all_(interface, "parameters/parameter")},
        }
    result["ports"] = {}
    for port in all_(root, "model/ports/port"):
        wire = one(port, "wire")
        left = wire.find(f"{_q('vectors')}/{_q('vector')}/{_q('left')}")
        right = wire.find(f"{_q('vectors')}/{_q('vector')}/{_q('right')}")
        width = 1 if left is None else int(left.text) - int(right.text) + 1
        result["ports"][one(port, "name").text] = (one(wire, "direction").text, width)
    result["module"] = one(root, "model/instantiations/componentInstantiation/moduleName").text
    result["files"] = [(one(f, "name").text, one(f, "fileType").text)
                       for f in all_(root, "fileSets/fileSet/file")]
    result["parameters"] = {one(p, "name").text: one(p, "value").text
                            for p in all_(root, "parameters/parameter")}
    return result
