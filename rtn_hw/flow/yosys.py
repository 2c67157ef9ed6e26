"""The one yosys synthesis script of rtn-hw, and the elaboration that feeds it.

Every synthesis (the sweep's runs, the regression baselines, the power model's netlists) runs
the same script on the same two RTLIL files:

* `unit.il`: the unit alone, converted as module `unit` (so its ports carry the names of the
  exported Verilog: `i__payload`, `o__valid`, ...);
* `top.il`: `rtn_hw.flow.harness.RegisterHarness` around an instance of `unit`.

The unit stays a module of its own (`keep_hierarchy`), so `stat -json` counts its cells apart
from the harness's; the script then writes the placed-and-routed netlist (`top.json`, for
nextpnr) and, for the power model, the mapped unit alone (`unit.v`, `unit.json`): the power
estimate simulates exactly the cells the run counts.

YoWASP tools cannot open absolute paths under /tmp (they mount their own), so every run
happens in a work directory inside the repository's build/ folder, with relative file names.
"""

import dataclasses
import hashlib
import pathlib
import re
import subprocess

from amaranth.back import rtlil

from .. import tools
from .harness import RegisterHarness

__all__ = ["UNIT_MODULE", "Elaborated", "build_dir", "rtlil_text", "run_yosys", "elaborate",
           "synth_script", "synthesize"]

REPO = pathlib.Path(__file__).resolve().parents[2]
UNIT_MODULE = "unit"


def build_dir(*parts):
    """A fresh-or-reused work directory under <repo>/build/."""
    path = REPO.joinpath("build", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def rtlil_text(design, *, name="top", ports=None):
    """RTLIL of an Amaranth component (its signature gives the ports) or elaboratable."""
    if ports is None:
        return rtlil.convert(design, name=name, emit_src=False)
    return rtlil.convert(design, name=name, ports=ports, emit_src=False)


def run_yosys(script, workdir, *, files=None, log="yosys.log", timeout=None):
    """Write `files` (name → text) into `workdir`, run `script` there; return the log text.

    Raises RuntimeError with the log's tail if yosys fails."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for fname, text in (files or {}).items():
        (workdir / fname).write_text(text)
    (workdir / "script.ys").write_text(script)
    proc = subprocess.run(tools.tied_to_parent([tools.yosys(), "-q", "-l", log, "-s",
                                                 "script.ys"]), cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)
    text = (workdir / log).read_text() if (workdir / log).exists() else ""
    if proc.returncode != 0:
        tail = "\n".join((text + proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"yosys failed in {workdir} (exit {proc.returncode}):\n{tail}")
    return text


@dataclasses.dataclass(frozen=True)
class Elaborated:
    """The two RTLIL files of one unit and what the reports say about its harness."""
    unit_il: str
    top_il: str
    harness_bits: dict          # {"in", "out", "xor_levels"}

    @property
    def netlist_hash(self):
        return hashlib.sha256((self.unit_il + "\0" + self.top_il).encode()).hexdigest()

    def files(self):
        return {"unit.il": self.unit_il, "top.il": self.top_il}


def _domain_ports(text, module):
    """Which of `clk` and `rst` Amaranth gave `module` as input ports."""
    body = re.search(rf"^module \\{re.escape(module)}\n(.*?)^end$", text, re.M | re.S)
    return tuple(name for name in ("clk", "rst")
                 if body and re.search(rf"^\s*wire\b.*\binput \d+\s+\\{name}$", body[1], re.M))


def elaborate(component):
    """`component` as `unit.il` and its register harness as `top.il`: an `Elaborated`."""
    unit_il = rtlil_text(component, name=UNIT_MODULE)
    harness = RegisterHarness(component, instance=UNIT_MODULE,
                              domain_ports=_domain_ports(unit_il, UNIT_MODULE))
    top_il = rtlil_text(harness)
    return Elaborated(unit_il, top_il, {"in": harness.in_bits, "out": harness.out_bits,
                                        "xor_levels": harness.levels})


def synth_script(synth, *, pnr_json=False, unit_netlist=False):
    """The synthesis script around one yosys synthesis command (e.g. `synth_ecp5 -top top`)."""
    lines = [
        "read_rtlil unit.il",
        "read_rtlil top.il",
        "hierarchy -top top",
        # The unit stays a module of its own: stat counts it apart from the harness, and
        # nothing is optimized across its ports.
        f"setattr -mod -set keep_hierarchy 1 {UNIT_MODULE}",
        # yosys 0.70's ABC reintegration asserts on wide multi-bit nets of the MAC array
        # (yosys issue #4349); splitting nets into bits first avoids it.
        "proc", "flatten", "splitnets",
        synth,
        # Amaranth's hierarchy leaves $scopeinfo cells that would pollute `stat`.
        "delete t:$scopeinfo",
        "tee -q -o stat.json stat -json",
    ]
    if pnr_json:
        lines.append("write_json top.json")
    if unit_netlist:
        lines += [
            # The mapped unit alone, for gate-level simulation. Private net names become
            # plain identifiers, so the simulator's trace and the JSON name the same nets.
            f"hierarchy -top {UNIT_MODULE}",
            "rename -hide w:*", "rename -enumerate -pattern n%",
            "write_verilog -noattr unit.v", "write_json unit.json",
        ]
    return "\n".join(lines) + "\n"


def synthesize(elab, synth, workdir, *, pnr_json=False, unit_netlist=False, timeout=None):
    """Run the script on `elab` in `workdir`; returns False when the workdir already held the
    outputs of the same inputs and script (nothing was run), else True."""
    workdir = pathlib.Path(workdir)
    script = synth_script(synth, pnr_json=pnr_json, unit_netlist=unit_netlist)
    digest = hashlib.sha256("\0".join([script, elab.unit_il, elab.top_il]).encode()).hexdigest()
    stamp = workdir / "synth.sha256"
    outputs = ["stat.json"] + (["top.json"] if pnr_json else []) \
        + (["unit.v", "unit.json"] if unit_netlist else [])
    if stamp.exists() and stamp.read_text() == digest \
            and all((workdir / name).exists() for name in outputs):
        return False
    stamp.unlink(missing_ok=True)
    run_yosys(script, workdir, files=elab.files(), timeout=timeout)
    stamp.write_text(digest)
    return True

