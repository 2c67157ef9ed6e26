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

The convolution stages (issue 14, the paper's comparison as a convolution) are one 3×3,
16 → 16 layer on a 28×28 map ('same' padding, stride 1) built three ways at the same L lanes ×
C channels, so the same MACs per cycle and the same cycles per image: the RTN `ConvStage`
(random trits, weights in block RAM), and the fp32 and int8 `BaselineConv` (the same window
generator over 32- and 8-bit elements, Fp32Dot / IntDot units, accumulators). Their rows are
compared with each other only ("group" "conv"), apart from the dot-product units. They are not
mapped all-LUT (8 all-LUT 24×24 multipliers cost yosys minutes; the DSP rows carry the area).
A conv row's throughput is per input position (`conv_throughput`); its power stimulus is
`conv_power_inputs` positions of random activations (`rtn_hw.flow.stimulus.conv_payloads`),
counted in the steady state, one window per input.

The dataflow engine runs only when named (`--units=dataflow_engine`); its "lanes" are II
targets, each synthesized at the folding with the fewest lanes × channels per layer that
reaches it (`rtn_hw.fold.fewest_lanes`); an exploration's `folding` parameter replaces that.
"""

import dataclasses

__all__ = ["SweepUnit", "UNITS", "Run", "plan", "default_seeds", "CHANNELS", "NODSP_MAX_LANES",
           "MAX_LANES", "SEEDS", "MULTI_SEEDS", "DEFAULT_LUT_TARGETS", "CONV_LANES",
           "CONV_POWER_WINDOWS", "conv_throughput", "conv_power_inputs"]

CHANNELS = 16             # P, output channels of the RTN MAC array in the sweep
CONV_LANES = 8            # L of the conv stages (1 channel): 8 MACs per cycle
CONV_POWER_WINDOWS = 3    # window periods counted in a conv stage's power estimate
CONV_AHEAD = 6            # bound on the positions a conv stage takes beyond its first window
CONV_BURST = 12           # warm-up cycles after the first window's step (past the burst)
CONV_TARGETS = ("ecp5-85k", "xilinx-lut6")
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
    group: str = "dot"          # rows are compared within a group: "dot" or "conv"
    all_lut: bool = True        # a baseline also mapped all-LUT (small lane counts only)

    @property
    def lut_mapping(self):
        """Baselines are also mapped all-LUT (small lane counts only)."""
        return self.kind == "baseline" and self.all_lut

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


def _conv_lanes(target):
    """The conv stages on the ECP5-85k (routed, power) and the LUT6 model (counts); the fp32
    stage does not fit the iCE40 UP5K."""
    return (CONV_LANES,) if target in CONV_TARGETS else ()


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
    # Convolution stages: L = CONV_LANES lanes × 1 channel (8 MACs per cycle); see above.
    SweepUnit("rtn_conv", "rtn", "conv_stage", (("channels", "1"),), _conv_lanes,
              stimulus="conv-ternary", group="conv"),
    # Full sweep only: its yosys run (67-370 s), route (680 s at load 1-5, over nextpnr's
    # 20-minute limit at load ~10) and gate-level power (424 s) take the default sweep's
    # 20-minute budget alone (docs/synth.md).
    SweepUnit("fp32_conv", "baseline", "fp32_conv", (("channels", "1"),), _conv_lanes,
              stimulus="conv-fp32", group="conv", all_lut=False, full_only=True),
    SweepUnit("int8_conv", "baseline", "int_conv", (("channels", "1"), ("width", "8")),
              _conv_lanes, stimulus="conv-int8", group="conv", all_lut=False),
)}


def _conv_shape(params):
    """(C_in, P, H = W, k, L, C) of a conv unit's registry parameters (name → value)."""
    return tuple(int(params[n]) for n in ("in_channels", "out_channels", "size", "kernel",
                                          "lanes", "channels"))


def conv_throughput(params):
    """(MACs, cycles) per input position of a conv unit: an image's H_out·W_out·N·P MACs and
    max(generator steps, H_out·W_out·K·G) cycles over its H·W positions."""
    from ..gateware.conv import generator_steps
    cin, p, size, k, lanes, channels = _conv_shape(params)
    n, pad = cin * k * k, (k // 2, k // 2)
    positions = size * size             # 'same' padding: as many outputs as inputs
    period = -(-n // lanes) * -(-p // channels)
    steps = generator_steps((size, size), (k, k), (1, 1), pad)
    return n * p, max(steps, positions * period) / positions


def conv_power_inputs(params):
    """(input positions, warm-up cycles) of a conv unit's power stimulus. The stage takes the
    positions up to its first window, and a few more that its registers hold ahead, as a
    burst of one a cycle; after that one position per window it takes, K·G cycles each (in
    the middle of the map's second row). The warm-up ends CONV_BURST cycles after the first
    window's step, past the burst, and the stimulus has CONV_AHEAD + 1 positions (a bound on
    the burst's) beside CONV_POWER_WINDOWS: the power model then counts only whole window
    periods of a busy core (at least CONV_POWER_WINDOWS), however many the burst took.
    The record's power.macs_per_cycle shows it: L·C when the count is steady."""
    from ..gateware.conv import emission_steps, window_grid
    cin, p, size, k, lanes, channels = _conv_shape(params)
    pad = (k // 2, k // 2)
    first = emission_steps((size, size), (k, k), (1, 1), pad)[0]
    rows, cols = window_grid((size, size), (k, k), (1, 1), pad)
    real = sum(1 for step, (u, v) in enumerate((u, v) for u in rows for v in cols)
               if step <= first and pad[0] <= u < pad[0] + size and pad[1] <= v < pad[1] + size)
    return real + CONV_AHEAD + 1 + CONV_POWER_WINDOWS, first + CONV_BURST


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
            if lanes is not None and unit.group == "conv":
                mine = lanes if mine else []    # any L, on the conv targets only
            elif lanes is not None:
                mine = [n for n in lanes if n in mine] if unit.name == "network_engine" \
                    else lanes
            for n in mine:
                chosen = tuple(seeds) if seeds else default_seeds(target, name, full)
                runs.append(Run(name, n, target, "dsp", chosen))
                if unit.lut_mapping and n <= NODSP_MAX_LANES and (
                        full or target in DEFAULT_LUT_TARGETS):
                    runs.append(Run(name, n, target, "lut", chosen))
    return runs
