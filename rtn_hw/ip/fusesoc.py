"""FuseSoC core description (CAPI2) of an exported unit, written beside its Verilog.

The core is named `rtn-hw:rtn_hw:MODULE:VERSION`. Target `default` gives the Verilog and its
top module to whatever flow depends on the core (LiteX, an FPGA target of the user's);
`lint` runs Verilator in lint-only mode, which is also how the tests check the file with
FuseSoC itself. Strings are written as JSON strings, which YAML reads as they are.
"""

import json

from .ipxact import LIBRARY, VENDOR

__all__ = ["core", "core_name"]


def core_name(module, version):
    return f"{VENDOR}:{LIBRARY}:{module}:{version}"


def core(*, module, version, description, verilog, extra_files=()):
    """The .core text; `verilog` and `extra_files` are names relative to the .core file."""
    q = json.dumps
    lines = [
        "CAPI=2:",
        f"name: {q(core_name(module, version))}",
        f"description: {q(description)}",
        "",
        "filesets:",
        "  rtl:",
        "    files:",
        f"      - {q(verilog)}",
        "    file_type: verilogSource",
    ]
    if extra_files:
        lines += ["  package:", "    files:"]
        lines += [f"      - {q(name)}: {{file_type: {q(kind)}}}" for name, kind in extra_files]
    lines += [
        "",
        "targets:",
        "  default:",
        "    filesets: [rtl]",
        f"    toplevel: {q(module)}",
        "  lint:",
        "    default_tool: verilator",
        "    filesets: [rtl]",
        f"    toplevel: {q(module)}",
        "    tools:",
        "      verilator:",
        "        mode: lint-only",
        # Amaranth's Verilog has width warnings that are harmless by construction.
        "        verilator_options: [-Wno-fatal, -Wno-lint, -Wno-style]",
        "",
    ]
    return "\n".join(lines)
