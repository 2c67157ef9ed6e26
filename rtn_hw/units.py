# amaranth: UnusedElaboratable=no
"""The registry of exportable units: one declarative table, cheap to import.

Every entry names a unit in snake_case, the component class (imported only when the unit is
built, so importing this module pulls in neither Amaranth nor NumPy), a one-line description,
and its parameters (name, type, default, one-line help), all as strings the way a command line
gives them. Units whose constructors take arrays (weights, thresholds, per-lane α/β) get a
small `arguments` function that turns the scalar parameters into constructor arguments.

`UNITS[name].build({"lanes": "8"})` parses, fills in defaults and constructs the component.
Every bad input, including a TypeError/ValueError raised by the component's own validation,
becomes a `ParameterError` whose message names the parameter, the value and what was
expected. Nothing here prints or exits.

The first line silences Amaranth's "created but never used" warning for components made here:
a constructor that rejects its arguments leaves a half-made component behind, and the warning
it would print when collected is noise on top of the one-line usage error.
"""

import dataclasses
import importlib
import math
from collections.abc import Callable

__all__ = ["ParameterError", "Type", "Param", "Unit", "Built", "UNITS", "unit",
           "INT", "OPT_INT", "STR", "BOOL", "FLOAT", "QFMT", "choice"]


class ParameterError(ValueError):
    """A unit name, parameter name or parameter value that cannot be used; one line."""


@dataclasses.dataclass(frozen=True)
class Type:
    """How a parameter's text becomes a value: `parse` raises ValueError("expected ...")."""
    name: str
    parse: Callable[[str], object]
    show: Callable[[object], object]


def _parse_int(text):
    try:
        return int(text, 10)
    except ValueError:
        pass
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError("expected an integer") from None


def _parse_bool(text):
    value = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}.get(text.strip().lower())
    if value is None:
        raise ValueError("expected a boolean (true/false, 1/0, yes/no)")
    return value


def _parse_float(text):
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _parse_opt_int(text):
    if text.strip().lower() == "none":
        return None
    try:
        return _parse_int(text)
    except ValueError:
        raise ValueError("expected an integer or none") from None


def _parse_q(text):
    from .model import Q       # lazily: the registry imports without NumPy
    return Q.parse(text)


# Lanes and channels: 4× the synthesis sweep's largest lane count. Elaborating beyond that
# takes minutes and gigabytes, so it is refused as a bad value instead.
MAX_SIZE = 4096


def _parse_size(text):
    value = _parse_int(text)
    if value > MAX_SIZE:
        raise ValueError(f"expected an integer at most {MAX_SIZE}")
    return value


INT = Type("int", _parse_int, int)
SIZE = Type("int", _parse_size, int)
OPT_INT = Type("int/none", _parse_opt_int, lambda value: value)
STR = Type("str", str, str)
BOOL = Type("bool", _parse_bool, bool)
FLOAT = Type("float", _parse_float, float)
QFMT = Type("Q", _parse_q, str)


def choice(*options):
    """A parameter that takes one of a few fixed words."""
    def parse(text):
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return text
    return Type("/".join(options), parse, str)


@dataclasses.dataclass(frozen=True)
class Param:
    """`used_with` ("name=word"): the parameter only matters when parameter `name` is `word`;
    giving it otherwise is an error rather than silently ignored."""
    name: str
    type: Type
    default: str       # as it would be written on the command line
    help: str
    used_with: str | None = None


@dataclasses.dataclass(frozen=True)
class Built:
    """A constructed component and the values that made it."""
    unit: "Unit"
    component: object
    given: dict        # name -> text, as given
    resolved: dict     # name -> parsed value, defaults filled in
    arguments: dict    # keyword arguments the component was constructed with


@dataclasses.dataclass(frozen=True)
class Unit:
    """One exportable unit.

    `component` is "module:Class" in rtn_hw.gateware (imported lazily), or a class.
    `arguments(values)` maps the parsed parameters to constructor keyword arguments; without
    it the parameters are passed through by name."""
    name: str
    component: object
    description: str
    params: tuple
    arguments: Callable[[dict], dict] | None = None

    def param(self, name):
        for param in self.params:
            if param.name == name:
                return param
        raise ParameterError(f"{self.name}: unknown parameter {name!r}; valid parameters: "
                             f"{', '.join(p.name for p in self.params) or '(none)'}")

    def component_class(self):
        if not isinstance(self.component, str):
            return self.component
        module, _, cls = self.component.partition(":")
        return getattr(importlib.import_module(f"rtn_hw.gateware.{module}"), cls)

    def resolve(self, given):
        """Parse `given` (name -> text) and fill in defaults: name -> value."""
        for name in given:
            self.param(name)
        values = {}
        for param in self.params:
            text = given.get(param.name, param.default)
            try:
                values[param.name] = param.type.parse(text)
            except (TypeError, ValueError) as error:
                raise ParameterError(f"{self.name}: {param.name}={text}: {error}") from None
        for param in self.params:
            if param.used_with and param.name in given:
                other, _, word = param.used_with.partition("=")
                if values[other] not in word.split("|"):
                    raise ParameterError(f"{self.name}: {param.name}={given[param.name]}: "
                                         f"only used with {other}={word.replace('|', ' or ')}")
        return values

    def build(self, given=None):
        given = dict(given or {})
        values = self.resolve(given)
        cls = self.component_class()
        try:
            arguments = self.arguments(values) if self.arguments else dict(values)
            component = cls(**arguments)
        except (TypeError, ValueError) as error:
            context = " ".join(f"{name}={text}" for name, text in given.items())
            context = f"{self.name}: {context}" if context else self.name
            raise ParameterError(f"{context}: {error}") from None
        return Built(self, component, given, values, arguments)

    def shown(self, values):
        """`values` (name -> parsed value) as JSON-able values."""
        return {p.name: p.type.show(values[p.name]) for p in self.params}


def unit(name):
    """The registered unit called `name`, or a ParameterError listing the valid names."""
    try:
        return UNITS[name]
    except KeyError:
        raise ParameterError(f"unknown unit {name!r}; valid units: "
                             f"{', '.join(sorted(UNITS)) or '(none)'}") from None


# -- constructor arguments of the units that take arrays ----------------------------------------
# Random draws use numpy.random.default_rng(seed), so the same seed always gives the same
# netlist; the drawn arrays are recorded in the export's sidecar ("arguments"). A draw needs a
# valid size: with a bad lane or channel count nothing is drawn and the component's own
# validation reports the count.

def _sizes_ok(*sizes):
    return all(isinstance(n, int) and n > 0 for n in sizes)


def _threshold_codes(values, fmt, size):
    """(lo, hi) integer codes in `fmt` for the `thresholds` modes "fixed" and "random".

    A code y is above a real threshold h iff y > floor(h·2^F), and below l iff y < ceil(l·2^F).
    Random: per element, hi drawn uniformly in [0, r) and lo = -hi, r = min(1, max / 2)."""
    import numpy as np
    scale = 2.0 ** fmt.frac_bits
    if values["thresholds"] == "fixed":
        lo, hi = math.ceil(values["lo"] * scale), math.floor(values["hi"] * scale)
        return (np.full(size, lo, dtype=np.int64), np.full(size, hi, dtype=np.int64))
    rng = np.random.default_rng(values["seed"])
    reach = min(1.0, fmt.max_int / scale / 2)
    hi = np.floor(rng.uniform(0.0, reach, size) * scale).astype(np.int64)
    return -hi, hi


def _encoder_arguments(values):
    lanes, thresholds = values["lanes"], None
    if values["thresholds"] != "load" and _sizes_ok(lanes):
        thresholds = _threshold_codes(values, values["in_fmt"], lanes)
    return {"lanes": lanes, "in_fmt": values["in_fmt"], "thresholds": thresholds}


def _decoder_arguments(values):
    lanes, alpha, beta = values["lanes"], values["alpha"], values["beta"]
    if values["values"] == "random" and _sizes_ok(lanes):
        import numpy as np
        rng = np.random.default_rng(values["seed"])
        alpha, beta = rng.uniform(0.25, 2.0, lanes), rng.uniform(-1.0, 1.0, lanes)
    return {"lanes": lanes, "out_fmt": values["out_fmt"], "alpha": alpha, "beta": beta}


# Per-tensor activation scale and offset folded into the random MAC constants.
_MAC_ALPHA_A, _MAC_BETA_A = 1.0, 0.5


def _mac_arguments(values):
    """Random weights: trits uniform on {-1, 0, +1}; per channel α_w in [0.5, 1.5) and β_w in
    [-0.25, 0.25), folded with α_a = 1, β_a = 0.5 into K1, K2, K0 (`fold_constants`)."""
    lanes, channels = values["lanes"], values["channels"]
    arguments = {"lanes": lanes, "channels": channels, "k_fmt": values["k_fmt"],
                 "out_fmt": values["out_fmt"], "weights": None, "constants": None,
                 "thresholds": None, "levels_per_stage": values["levels_per_stage"],
                 "tree": values["tree"]}
    if not _sizes_ok(lanes, channels):
        return arguments
    if values["weights"] == "random":
        import numpy as np
        from .model import fold_constants
        rng = np.random.default_rng(values["seed"])
        weights = rng.integers(-1, 2, (channels, lanes)).astype(np.int8)
        alpha_w = rng.uniform(0.5, 1.5, channels)
        beta_w = rng.uniform(-0.25, 0.25, channels)
        arguments["weights"] = weights
        arguments["constants"] = fold_constants(
            alpha_w, beta_w, _MAC_ALPHA_A, _MAC_BETA_A, weights.sum(axis=1, dtype=np.int64),
            lanes, values["k_fmt"])
    if values["thresholds"] != "none":
        # Drawn from a generator of its own, so thresholds do not change the weights.
        seeded = dict(values, seed=[values["seed"], 1])
        arguments["thresholds"] = _threshold_codes(seeded, values["out_fmt"], channels)
    return arguments


def _engine_arguments(values):
    """Load the network named by `weights` ("shipped" = weights/rtn_digits.json); the loader's
    one-line "FILE: FIELD: problem" error becomes the parameter error."""
    from .weights import DEFAULT_MANIFEST, load
    path = DEFAULT_MANIFEST if values["weights"] == "shipped" else values["weights"]
    return {"network": load(path), "lanes": values["lanes"], "channels": values["channels"]}


def _dataflow_arguments(values):
    """The network as for network_engine; `folding` through `dataflow.parse_foldings`."""
    from .gateware.dataflow import parse_foldings
    network = _engine_arguments(dict(values, lanes=None, channels=None))["network"]
    return {"network": network, "foldings": parse_foldings(values["folding"], network),
            "buffers": values["buffers"]}


def _conv_layer(values, rng):
    """A random RTN convolution for conv_stage: trits uniform on {-1, 0, +1}, α_w, β_w, α_a,
    β_a as `_mac_arguments` draws them, random thresholds; 'same' padding, stride 1."""
    import numpy as np
    from .model import Q, fold_constants
    from .model.conv import ConvLayer
    from .model.network import Layer
    cin, p, size, k = (values[n] for n in ("in_channels", "out_channels", "size", "kernel"))
    n = cin * k * k
    t_w = rng.integers(-1, 2, (p, n)).astype(np.int8)
    alpha_w, beta_w = rng.uniform(0.5, 1.5, p), rng.uniform(-0.25, 0.25, p)
    k_fmt, out_fmt = Q.parse("Q12.8"), Q.parse("Q24.8")
    consts = fold_constants(alpha_w, beta_w, _MAC_ALPHA_A, _MAC_BETA_A,
                            t_w.sum(axis=1, dtype=np.int64), n, k_fmt)
    lo, hi = _threshold_codes({"thresholds": "random", "seed": [values["seed"], 1]}, out_fmt, p)
    dense = Layer("conv", t_w, alpha_w, beta_w, _MAC_ALPHA_A, _MAC_BETA_A, consts, out_fmt,
                  np.ones(p, np.int64), lo, hi)
    return ConvLayer("conv", (cin, size, size), (k, k), (1, 1), (k // 2, k // 2), dense)


def _check_conv(values):
    """A one-line ValueError for a convolution shape the units cannot build."""
    for name in ("lanes", "channels", "in_channels", "out_channels", "size", "kernel"):
        if values[name] < 1:
            raise ValueError(f"{name} must be a positive integer, not {values[name]}")
    if values["kernel"] % 2 == 0 or values["kernel"] > values["size"]:
        raise ValueError(f"kernel must be odd ('same' padding) and at most size "
                         f"{values['size']}, not {values['kernel']}")
    n = values["in_channels"] * values["kernel"] ** 2
    if values["lanes"] > n:
        raise ValueError(f"lanes must be at most in_channels·kernel² = {n}, not "
                         f"{values['lanes']}")
    if values["channels"] > values["out_channels"]:
        raise ValueError(f"channels must be at most out_channels = {values['out_channels']}, "
                         f"not {values['channels']}")


def _conv_arguments(values):
    """conv_stage: the RTN ConvStage of a random layer (`_conv_layer`), weights in block RAM;
    its output FIFO holds 2 results (the engine sizes it for the next stage's waits)."""
    from .gateware.dataflow import Folding
    import numpy as np
    _check_conv(values)
    layer = _conv_layer(values, np.random.default_rng(values["seed"]))
    return {"layer": layer, "folding": Folding(values["lanes"], values["channels"], "bram"),
            "fifo_depth": 2}


def _baseline_conv_arguments(kind):
    """fp32_conv / int_conv: the same shape with seeded N(0, 1) weights, as binary32 or
    quantized to the integer width (`rtn_hw.flow.stimulus.quantize`, as the power stimulus)."""
    def arguments(values):
        import numpy as np
        _check_conv(values)
        cin, p, size, k = (values[n] for n in ("in_channels", "out_channels", "size", "kernel"))
        width = values.get("width", 32)
        if width not in (8, 16, 32):
            raise ValueError(f"Integer width must be 8 or 16, not {width!r}")
        out = {"kind": kind if kind == "fp32" else f"int{width}", "lanes": values["lanes"],
               "channels": values["channels"], "size": (size, size),
               "padding": (k // 2, k // 2)}
        w = np.random.default_rng(values["seed"]).standard_normal((p, cin, k, k))
        if kind == "fp32":
            out["add_stages"] = values["add_stages"]
            out["weights"] = w.astype(np.float32).view(np.uint32)
        else:
            from .flow.stimulus import quantize
            out["weights"] = quantize(w, width)[0]
        return out
    return arguments


def _conv_params(lanes, channels):
    """Shape parameters of the convolution units: 'same' padding, stride 1."""
    return (Param("lanes", SIZE, lanes, "Lanes L of each dot product (input elements per "
                  "cycle)."),
            Param("channels", SIZE, channels, "Output channels C computed per cycle."),
            Param("in_channels", SIZE, "16", "Input channels C_in."),
            Param("out_channels", SIZE, "16", "Output channels P."),
            Param("size", SIZE, "28", "Input map height and width (square)."),
            Param("kernel", SIZE, "3", "Kernel height and width (square, odd for 'same' "
                  "padding)."),
            Param("seed", INT, "0", "Seed of numpy.random.default_rng for the weights."))


def _lanes(default, help="Vector lanes (elements per input vector)."):
    return Param("lanes", SIZE, default, help)


def _thresholds(where):
    """The real lo/hi thresholds used with thresholds=fixed, the same on every lane/channel."""
    return (Param("lo", FLOAT, "-0.5", f"Lower threshold (real), every {where}.",
                  "thresholds=fixed"),
            Param("hi", FLOAT, "0.5", f"Upper threshold (real), every {where}.",
                  "thresholds=fixed"))


def _tree(default):
    return Param("tree", choice("compressor", "adder"), default,
                 "Count trees of the MAC core: carry-chain compressor or adder tree.")


def _seed(used_with):
    return Param("seed", INT, "0", "Seed of numpy.random.default_rng for the random draws.",
                 used_with)


UNITS = {u.name: u for u in (
    Unit("popcount", "popcount:Popcount",
         "Population count of a WIDTH-bit word, one word per cycle.", (
             Param("width", INT, "16", "Input word width in bits."),
             Param("style", STR, "tree", "Adder structure: tree or chain."),
             Param("levels_per_stage", OPT_INT, "none",
                   "Logic levels between pipeline registers; none = one output register."),
         )),
    Unit("ternary_dot", "dot:TernaryDot",
         "Eq. 8 dot product D and activation sum S_a of ternary vectors, one pair per cycle.", (
             _lanes("16"),
             Param("pipeline", INT, "1",
                   "Registers in all (= latency), 0 (combinational) to the logic depth."),
             Param("activation_sum", BOOL, "true", "Also output S_a = sum of the activations."),
             _tree("compressor"),
         )),
    Unit("ternary_encoder", "codec:TernaryEncoder",
         "Fixed-point pre-activations to trits by two threshold comparisons per lane.", (
             _lanes("8"),
             Param("in_fmt", QFMT, "Q8.8", "Format of the input codes."),
             Param("thresholds", choice("load", "fixed", "random"), "load",
                   "load: from the t stream; fixed: lo/hi on every lane; random: drawn."),
             *_thresholds("lane"),
             _seed("thresholds=random"),
         ), _encoder_arguments),
    Unit("ternary_decoder", "codec:TernaryDecoder",
         "Trits to fixed-point codes of alpha*t + beta per lane.", (
             _lanes("8"),
             Param("out_fmt", QFMT, "Q8.8", "Format of the output codes."),
             Param("values", choice("fixed", "random"), "fixed",
                   "fixed: alpha/beta on every lane; random: per-lane draws from seed."),
             Param("alpha", FLOAT, "1.0", "Scale alpha (> 0), every lane.", "values=fixed"),
             Param("beta", FLOAT, "0.0", "Offset beta, every lane.", "values=fixed"),
             _seed("values=random"),
         ), _decoder_arguments),
    Unit("int_dot", "intdot:IntDot",
         "Exact dot product of signed 8- or 16-bit integer vectors, one pair per cycle.", (
             _lanes("8"),
             Param("width", INT, "8", "Operand width in bits: 8 or 16."),
         )),
    Unit("fp32_dot", "fp32:Fp32Dot",
         "IEEE-754 binary32 dot product (RNE multipliers, adder tree), one pair per cycle.", (
             _lanes("4"),
             Param("mul_stages", INT, "3", "Cycles per multiplier: 1, 2 or 3."),
             Param("add_stages", INT, "3", "Cycles per adder-tree level: 1, 2 or 3."),
         )),
    Unit("rtn_mac_array", "mac:RtnMacArray",
         "CHANNELS RTN outputs K1*D + K2*S_a + K0 over one ternary vector per cycle.", (
             _lanes("16"),
             Param("channels", SIZE, "4", "Output channels."),
             Param("k_fmt", QFMT, "Q12.8", "Format of the K1, K2, K0 constants."),
             Param("out_fmt", QFMT, "Q24.8", "Format of the outputs y."),
             Param("weights", choice("random", "load"), "random",
                   "random: seeded trit weights and constants, baked; load: the load stream."),
             Param("thresholds", choice("none", "fixed", "random"), "none",
                   "none: output y; fixed/random: re-encode y to trits with lo/hi thresholds."),
             *_thresholds("channel"),
             Param("seed", INT, "0", "Seed of numpy.random.default_rng for weights, constants "
                   "and random thresholds."),
             Param("levels_per_stage", OPT_INT, "none",
                   "MAC core logic levels between registers; none = unpipelined trees."),
             _tree("adder"),
         ), _mac_arguments),
    Unit("network_engine", "engine:NetworkEngine",
         "A trained RTN MLP from a weights manifest, one image in, logits and class out.", (
             _lanes("32", "Input trits per cycle and channel."),
             Param("channels", SIZE, "2", "Output channels computed in parallel."),
             Param("weights", STR, "shipped",
                   "Weights manifest (.json); shipped = weights/rtn_digits.json."),
         ), _engine_arguments),
    Unit("dataflow_engine", "dataflow:DataflowEngine",
         "A trained RTN MLP or CNN, one pipeline stage per layer, a new image every II "
         "cycles (a CNN takes one pixel position per handshake).", (
             Param("folding", STR, "unfolded",
                   "unfolded (II = 1, baked), smallest (1x1 per layer), or per layer "
                   "LANESxCHANNELS[:bram|logic|baked], comma-separated (a CNN's max-pool "
                   "layers take none)."),
             Param("weights", STR, "shipped",
                   "Weights manifest (.json); shipped = weights/rtn_digits.json."),
             Param("buffers", choice("fifo", "bram"), "fifo",
                   "Hidden results between stages: fifo (whole images) or bram (block RAM "
                   "read a chunk at a time: the iCE40 UP5K)."),
         ), _dataflow_arguments),
    Unit("conv_stage", "conv:ConvStage",
         "An RTN convolution stage ('same' padding) of random weights: line-buffer window "
         "generator, LANES x CHANNELS MAC core; one input position per handshake.",
         _conv_params("8", "1"), _conv_arguments),
    Unit("fp32_conv", "baseconv:BaselineConv",
         "The fp32 convolution stage of conv_stage's shape and throughput (Fp32Dot units, "
         "IEEE accumulators).", (
             *_conv_params("8", "1"),
             Param("add_stages", INT, "3", "Cycles per binary32 add: 1, 2 or 3."),
         ), _baseline_conv_arguments("fp32")),
    Unit("int_conv", "baseconv:BaselineConv",
         "The int8/int16 convolution stage of conv_stage's shape and throughput (IntDot "
         "units, exact accumulators).", (
             *_conv_params("8", "1"),
             Param("width", INT, "8", "Operand width in bits: 8 or 16."),
         ), _baseline_conv_arguments("int")),
)}
