"""The platform top shared by the boards: the SerialClassifier on the board's USB UART pins,
with its busy and error signals stretched so they are visible on LEDs. The engine behind it is
the board's NetworkEngine configuration (the default) or a DataflowEngine of a given folding
(`make bitstream ENGINE=dataflow FOLDING=...`), for the shipped digits MLP or another network
(`python -m boards.build ulx3s --engine dataflow --network rtn_mnist5k_cnn`: a CNN runs on the
dataflow engine only, its images sent in PARTs, docs/protocol.md)."""

import dataclasses

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring

from rtn_hw import weights
from rtn_hw.gateware.dataflow import DataflowEngine, parse_foldings
from rtn_hw.gateware.engine import ENGINE_CONFIGS, NetworkEngine
from rtn_hw.gateware.link import SerialClassifier
from rtn_hw.gateware.uart import MIN_DIVISOR

__all__ = ["Board", "BoardTop", "board_engine", "board_logic", "check_network", "divisor_for",
           "DEFAULT_BAUD", "DEFAULT_TIMEOUT_MS", "ENGINES", "DATAFLOW_II"]

DEFAULT_BAUD = 115_200
DEFAULT_TIMEOUT_MS = 50      # inter-byte timeout: far above USB-serial gaps, short for a human
BAUD_TOLERANCE = 0.02        # 8N1 tolerates about ±4.5% between both ends; keep half for the host
LED_HOLD_S = {"busy": 0.05, "error": 0.5}
ENGINES = ("network", "dataflow")
# ENGINE=dataflow without FOLDING: `fold.fewest_lanes(network, DATAFLOW_II[target])`, the fastest
# folding that fits and routes at the board clock: on the ECP5-85k II 8 (64x16,128x16,32x5 with
# weights in LUTs: 56.72 MHz beside the link, II 4 does not fit), on the UP5K 8x1,16x1,2x1 (II
# 512 fits the engine alone, but needs 5,543 of the 5,280 logic cells with the link).
DATAFLOW_II = {"ecp5-85k": 8, "ice40-up5k": 1024}


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    platform: type           # an amaranth-boards platform class
    target: str              # key of ENGINE_CONFIGS
    clock_hz: float
    busy_led: tuple          # (resource name, number)
    error_led: tuple

    @property
    def engine_config(self):
        return ENGINE_CONFIGS[self.target]


def divisor_for(clock_hz, baud):
    """Clock cycles per bit for `baud`, or ValueError if it cannot be met within 2%."""
    if isinstance(baud, bool) or not isinstance(baud, int) or baud < 1:
        raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Baud rate {baud} is too fast for a {clock_hz / 1e6:g} MHz clock "
                         f"(at most {int(clock_hz // MIN_DIVISOR)})")
    error = abs(clock_hz / divisor - baud) / baud
    if error > BAUD_TOLERANCE:
        raise ValueError(f"Baud rate {baud} is off by {100 * error:.1f}% from a "
                         f"{clock_hz / 1e6:g} MHz clock (divisor {divisor}); at most "
                         f"{100 * BAUD_TOLERANCE:g}% is allowed")
    return divisor


def check_network(network):
    """`network` if a board can run it, else ValueError: a CNN must have one input channel
    (the host sends an image as the golden network reads it, channel after channel, and the
    engine takes a position's channels together; no shipped CNN has two)."""
    if network.convolutional and network.layers[0].in_shape[0] != 1:
        raise ValueError(f"A CNN with {network.layers[0].in_shape[0]} input channels cannot "
                         f"run on a board: the serial link sends one channel's pixels at a "
                         f"time (1 expected)")
    return network


class _Stretch(wiring.Component):
    """`o` is high while `i` is high and for `hold` cycles after."""

    def __init__(self, hold):
        self._hold = hold
        super().__init__({"i": wiring.In(1), "o": wiring.Out(1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self._hold + 1))
        with m.If(self.i):
            m.d.sync += count.eq(self._hold)
        with m.Elif(count != 0):
            m.d.sync += count.eq(count - 1)
        m.d.comb += self.o.eq(self.i | (count != 0))
        return m


def board_engine(board, *, network=None, engine="network", folding=None):
    """The engine a board's bitstream carries: `network` (default the shipped digits MLP) on
    the board's NetworkEngine configuration, or on a DataflowEngine of `folding` (text; default
    per network and board, see DATAFLOW_II). ValueError for a CNN on the network engine."""
    network = weights.load() if network is None else network
    cnn = check_network(network).convolutional
    if engine == "network":
        if folding is not None:
            raise ValueError("A folding applies to the dataflow engine only")
        if cnn:
            raise ValueError("The network engine runs MLPs only; a CNN needs the dataflow "
                             "engine")
        return NetworkEngine(network, **board.engine_config)
    if engine != "dataflow":
        raise ValueError(f"Engine must be one of {', '.join(map(repr, ENGINES))}, not "
                         f"{engine!r}")
    if folding is not None:
        foldings = parse_foldings(folding, network)
    elif cnn:
        # The fewest lanes whose stages keep up with the input (II 841 for the MNIST CNN): far
        # faster than the serial line anyway.
        from rtn_hw.demo import default_foldings
        foldings = default_foldings(network)
    else:
        from rtn_hw.fold import fewest_lanes
        foldings = fewest_lanes(network, DATAFLOW_II[board.target])
    from rtn_hw.fold import buffers_for
    # A CNN's stages hand results on through FIFOs only (DataflowEngine refuses "bram").
    return DataflowEngine(network, foldings, "fifo" if cnn else buffers_for(board.target))


def board_logic(board, *, divisor, timeout, network=None, engine="network", folding=None):
    """The board logic with its pins as ports: `SerialClassifier(board_engine(...))` at
    `divisor` cycles a bit and a `timeout`-cycle inter-byte timeout. BoardTop builds it at the
    bitstream's baud rate; the board simulation (sim/board/run.py) at a faster one, and
    nothing else differs."""
    return SerialClassifier(board_engine(board, network=network, engine=engine,
                                         folding=folding), divisor=divisor, timeout=timeout)


class BoardTop(wiring.Component):
    """The top a platform builds: no ports of its own, it requests the board's pins."""

    def __init__(self, board, *, baud=DEFAULT_BAUD, timeout_ms=DEFAULT_TIMEOUT_MS,
                 network=None, engine="network", folding=None):
        self._board = board
        self._divisor = divisor_for(board.clock_hz, baud)
        self._baud = baud
        self._logic = board_logic(board, divisor=self._divisor,
                                  timeout=int(board.clock_hz * timeout_ms / 1000),
                                  network=network, engine=engine, folding=folding)
        self._engine = self._logic.engine
        self._network = self._engine.network
        super().__init__({})

    board = property(lambda self: self._board)
    divisor = property(lambda self: self._divisor)
    baud = property(lambda self: self._baud)
    network = property(lambda self: self._network)
    engine = property(lambda self: self._engine)
    logic = property(lambda self: self._logic)

    def elaborate(self, platform):
        m = Module()
        m.submodules.logic = logic = self._logic
        uart = platform.request("uart", 0)
        m.d.comb += [logic.rx.eq(uart.rx.i), uart.tx.o.eq(logic.tx)]
        for what, signal in (("busy", logic.busy), ("error", logic.error)):
            stretch = _Stretch(int(self._board.clock_hz * LED_HOLD_S[what]))
            m.submodules[f"{what}_led"] = stretch
            led = platform.request(*getattr(self._board, f"{what}_led"))
            m.d.comb += [stretch.i.eq(signal), led.o.eq(stretch.o)]
        return m
