"""Vendor-ready IP: a unit behind AXI4-Stream ports, with IP-XACT and FuseSoC descriptions.

`rtn_hw.flow.verilog.export(unit, params, interface="axis")` builds the unit, wraps it
(wrap.py, gateware in axis.py), converts the wrapper and describes it: the sidecar, the
parameters as `localparam`s, `ipxact.component` (component.xml) and `fusesoc.core`.
docs/ip.md is the user's guide. Importing this package is cheap (no Amaranth), so the command
line checks an interface name before it builds anything.
"""

__all__ = ["INTERFACES", "check_interface"]

# `rtn-hw verilog --interface`: the unit's own stream ports, or AXI4-Stream.
INTERFACES = ("native", "axis")


def check_interface(interface):
    """A `ParameterError` naming the valid interfaces unless `interface` is one of them."""
    from ..units import ParameterError
    if interface not in INTERFACES:
        raise ParameterError(f"unknown interface {interface!r}; valid interfaces: "
                             f"{', '.join(INTERFACES)}")
