"""What `make synth` measures: the sweep's units, their lane counts and parameters, the runs.

A run is one (unit, lanes) on one target with one mapping ("dsp", or "lut" for the all-LUT
baselines at small lane counts) and the nextpnr seeds it is routed with.

Two sweeps. The default one (`make synth`) is sized to finish cold within 20 minutes on two
cores: every unit at its lane counts on every target, one nextpnr seed a row, the fp32
baseline at 16 lanes, the all-LUT baselines on the ECP5-85k only and no int16 baseline unless
named (yosys spends minutes on every all-LUT multiplier array: docs/synth.md). The full one
(`make synth-full`, `--full`) is what the README's tables are made from: it adds the int16
baseline, the all-LUT baselines on every target, the fp32 baseline at 64 lanes (it does not
fit the ECP5-85k's DSPs, and counting it costs yosys about 600 CPU-seconds a target) and routes
the RTN rows on the ECP5-85k with three seeds, reporting the median Fmax (one seed moves Fmax
by up to 10 %).
`SEEDS=` overrides the seeds of every row in either.

The network engine is measured in the configurations its boards ship
(`rtn_hw.gateware.engine.ENGINE_CONFIGS`): 32 lanes × 2 channels on the iCE40 UP5K, 64 × 8 on
the ECP5-85k; its power stimulus is the digits test images themselves.

The dataflow engine runs only when named (`--units=dataflow_engine`); its "lanes" are II
targets, each synthesized at the folding with the fewest lanes × channels per layer that
reaches it (`rtn_hw.fold.fewest_lanes`); an exploration's `folding` parameter replaces that.
"""

import dataclasses

__all__ = ["SweepUnit", "UNITS", "Run", "plan", "default_seeds", "CHANNELS", "NODSP_MAX_LANES",
           "MAX_LANES", "SEEDS", "MULTI_SEEDS", "DEFAULT_LUT_TARGETS"]

CHANNELS = 16             # P, output channels of the RTN MAC array in the sweep
NODSP_MAX_LANES = 16      # all-LUT baselines only up to this many lanes (slow to synthesize)
DEFAULT_LUT_TARGETS = ("ecp5-85k",)  # the default sweep's all-LUT baselines (full: every target)
MAX_LANES = 1024
SEEDS = (1,)              # nextpnr seeds of a row (its Fmax is their median)
MULTI_SEEDS = (1, 2, 3)   # the ECP5 RTN rows


def _engine_configs():
    from ..gateware.engine import ENGINE_CONFIGS
    return ENGINE_CONFIGS


@dataclasses.dataclass(frozen=True)
class SweepUnit:
    name: str
    kind: str                   # "rtn" or "baseline"
    registry: str               # name in rtn_hw.units.UNITS
    extra: object               # registry parameters: (name, text) pairs, or lanes → pairs
    default_lanes: tuple        # or a function target → lane counts
    full_lanes: tuple = ()      # lane counts the full sweep adds
    channels: int = 1           # MACs per input vector = lanes × channels (not the engine)
    stimulus: str = ""          # payload kind for the power model
    lanes_param: str = "lanes"  # the registry parameter a row's lane count sets, or None
    on_request: bool = False    # only in sweeps that name it
    full_only: bool = False     # in the default sweep only when named

    @property
    def lut_mapping(self):
        """Baselines are also mapped all-LUT (small lane counts only)."""
        return self.kind == "baseline"

    def lanes_for(self, target, full=False):
        lanes = self.default_lanes
        lanes = tuple(lanes(target) if callable(lanes) else lanes)
        return lanes + self.full_lanes if full else lanes

    def params(self, lanes, overrides=()):
        """Registry parameters (name → text) at `lanes`; `overrides` ((name, text) pairs, an
        exploration's choices) replace the sweep's own. The network engine outside its board
        configurations needs its channels among the overrides."""
        try:
            extra = self.extra(lanes) if callable(self.extra) else self.extra
        except LookupError:
            if not overrides:
                raise
            extra = ()
        sized = {self.lanes_param: str(lanes)} if self.lanes_param else {}
        return {**sized, **dict(extra), **dict(overrides)}


def _dot_params(lanes):
    """TernaryDot with a register after every logic level of its core (one carry-chain level
    of the compressor per cycle; the baselines register every multiplier and adder stage), so
    that its Fmax is the fabric's, not the tree depth's."""
    from ..gateware.dot import dot_levels
    return (("pipeline", str(dot_levels(lanes))),)


def _engine_lanes(target):
    config = _engine_configs().get(target)
    return (config["lanes"],) if config else ()


def _engine_params(lanes):
    channels = {c["lanes"]: c["channels"] for c in _engine_configs().values()}
    if lanes not in channels:
        raise LookupError(f"network_engine has no board configuration with {lanes} lanes")
    return (("channels", str(channels[lanes])),)


def _dataflow_lanes(target):
    """II targets: folded by 8 and 32 (fully unfolded, II 1, needs 108,755 LUT4 places on
    the ECP5-85k's 83,640: docs/units/dataflow_engine.md)."""
    return (8, 32) if target == "ecp5-85k" else (32,)


def _dataflow_params(ii):
    from ..fold import fewest_lanes
    from ..weights import load
    return (("folding", ",".join(map(str, fewest_lanes(load(), ii)))),)


UNITS = {u.name: u for u in (
    SweepUnit("ternary_dot", "rtn", "ternary_dot", _dot_params, (16, 64, 256),
              stimulus="ternary"),
    # Weights baked (seeded random trits, the registry's default): a trained layer deployed
    # as constants, which is also the only mode the power model can stimulate (it drives `i`
    # alone). Popcount trees get a register every 2 logic levels, as the baselines' adders do.
    SweepUnit("rtn_mac_array", "rtn", "rtn_mac_array",
              (("channels", str(CHANNELS)), ("levels_per_stage", "2")), (16, 64, 256),
              channels=CHANNELS, stimulus="planes"),
    SweepUnit("network_engine", "rtn", "network_engine", _engine_params, _engine_lanes,
              stimulus="images"),
    SweepUnit("dataflow_engine", "rtn", "dataflow_engine", _dataflow_params, _dataflow_lanes,
              stimulus="images", lanes_param=None, on_request=True),
    SweepUnit("fp32_dot", "baseline", "fp32_dot", (), (16,), full_lanes=(64,),
              stimulus="fp32"),
    SweepUnit("int8_dot", "baseline", "int_dot", (("width", "8"),), (16, 64), stimulus="int8"),
    SweepUnit("int16_dot", "baseline", "int_dot", (("width", "16"),), (16, 64),
              stimulus="int16", full_only=True),
)}


def default_seeds(target, unit, full=False):
    """nextpnr seeds of a row when SEEDS= is not given."""
    return MULTI_SEEDS if full and target == "ecp5-85k" and UNITS[unit].kind == "rtn" \
        else SEEDS


@dataclasses.dataclass(frozen=True)
class Run:
    unit: str
    lanes: int
    target: str
    mapping: str                # "dsp" or "lut"
    seeds: tuple = SEEDS
    params: tuple = ()          # (name, text) registry parameter overrides, sorted by name

    @property
    def id(self):
        tail = "".join(f"/{name}={value}" for name, value in self.params)
        return f"{self.target}/{self.unit}/{self.lanes}/{self.mapping}{tail}"

    @property
    def config(self):
        """What one elaboration serves: every target and seed of the same unit netlist."""
        return (self.unit, self.lanes, self.params)


def plan(targets=None, units=None, lanes=None, seeds=None, full=False):
    """The runs of a sweep (the full one with `full`), in report order. `lanes` (a list) keeps
    only those lane counts; `seeds` (a tuple) replaces every row's default seeds."""
    from .devices import TARGETS
    targets = list(TARGETS) if targets is None else targets
    if units is None:
        units = [u for u in UNITS if not UNITS[u].on_request and (full or not UNITS[u].full_only)]
    runs = []
    for target in targets:
        for name in units:
            unit = UNITS[name]
            mine = unit.lanes_for(target, full)
            if lanes is not None:
                mine = [n for n in lanes if n in mine] if unit.name == "network_engine" \
                    else lanes
            for n in mine:
                chosen = tuple(seeds) if seeds else default_seeds(target, name, full)
                runs.append(Run(name, n, target, "dsp", chosen))
                if unit.lut_mapping and n <= NODSP_MAX_LANES and (
                        full or target in DEFAULT_LUT_TARGETS):
                    runs.append(Run(name, n, target, "lut", chosen))
    return runs
