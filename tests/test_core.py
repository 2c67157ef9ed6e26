"""MacCore, the one Eq. 8 datapath, against the golden model (`ternary_dot`,
`activation_sum`): biased counts D_p + m_p and S_a + lanes, bit for bit."""

import numpy as np
import pytest

from rtn_hw import model
from rtn_hw.gateware.core import MacCore, core_levels
from rtn_hw.gateware.popcount import cut_levels
from rtn_hw.gateware.simulate import run_stream

from helpers import assert_rejects, random_trits


def planes(t, zero_sign):
    nz, sg = model.pack(t, zero_sign)
    return [{"nz": model.planes_to_int(nz[k]), "sg": model.planes_to_int(sg[k])}
            for k in range(len(t))]


def activations(rng, lanes, count):
    """Corners (all zero with both sign bits, all +1, all -1, alternating), then random
    vectors of random density; every zero gets a random don't-care sign bit."""
    k = np.arange(lanes)
    corners = np.array([np.zeros(lanes), np.zeros(lanes), np.ones(lanes), -np.ones(lanes),
                        np.where(k % 2, -1, 1), np.where(k % 3 == 0, 0, 1)], dtype=np.int8)
    t = np.concatenate([corners, random_trits(rng, (count, lanes))])
    signs = rng.random(t.shape) < 0.5
    signs[0], signs[1] = False, True
    return t, signs


def golden(t_w, t_a, zs_w, zs_a):
    """Per vector b and channel p: D[b, p] and S_a[b] from the golden model."""
    w, a = model.pack(t_w, zs_w), model.pack(t_a, zs_a)
    d, s_a = model.ternary_matmul(w, a)
    return d, s_a


@pytest.mark.parametrize("tree", ["compressor", "adder"])
@pytest.mark.parametrize("lanes,channels,lps", [(1, 1, None), (3, 2, 1), (16, 4, 2),
                                                (64, 3, 1), (64, 16, 2), (256, 2, 3)])
def test_baked_weights_match_golden(tree, lanes, channels, lps, seed, rng):
    t_w = random_trits(rng, (channels, lanes))
    t_w[0, :] = 0                                   # a row with no weights at all
    if channels > 2:
        t_w[1, :] = 1
    cuts = cut_levels(core_levels(lanes, tree, t_w), lps)
    dut = MacCore(lanes, channels, weights=t_w, tree=tree, cuts=cuts)
    t_a, zs = activations(rng, lanes, 300)
    d, s_a = golden(t_w, t_a, np.zeros_like(t_w, bool), zs)
    run = run_stream(dut, [{"a": p} for p in planes(t_a, zs)], seed=seed, idle=0.2, stall=0.2)
    m = np.count_nonzero(t_w, axis=1)
    assert dut.d_bias == tuple(int(x) for x in m)
    assert [o["d"] for o in run.outputs] == (d + m).tolist()
    assert [o["s"] for o in run.outputs] == (s_a + lanes).tolist()


@pytest.mark.parametrize("tree", ["compressor", "adder"])
@pytest.mark.parametrize("lanes,channels,lps", [(1, 1, None), (5, 2, 1), (64, 2, 2),
                                                (256, 1, 1)])
def test_streamed_weights_match_golden(tree, lanes, channels, lps, seed, rng):
    dut = MacCore(lanes, channels, tree=tree, cuts=cut_levels(core_levels(lanes, tree), lps),
                  side=8)
    t_a, zs_a = activations(rng, lanes, 200)
    count = len(t_a)
    t_w = random_trits(rng, (count, channels, lanes))
    t_w[0] = 1
    zs_w = rng.random(t_w.shape) < 0.5
    w = [planes(t_w[:, p], zs_w[:, p]) for p in range(channels)]
    a = planes(t_a, zs_a)
    payloads = [{"a": a[b], "w": [w[p][b] for p in range(channels)], "side": b % 256}
                for b in range(count)]
    run = run_stream(dut, payloads, seed=seed, idle=0.2, stall=0.2)
    for b, out in enumerate(run.outputs):
        wb, ab = model.pack(t_w[b], zs_w[b]), model.pack(t_a[b:b + 1], zs_a[b:b + 1])
        d, s_a = model.ternary_matmul(wb, ab)
        assert out == {"d": (d[0] + lanes).tolist(), "s": int(s_a[0]) + lanes, "side": b % 256}


@pytest.mark.parametrize("lanes,cuts,registered", [(1, (), True), (3, (), False),
                                                   (64, (1, 2, 5), True), (256, (3,), False)])
def test_latency_and_throughput(lanes, cuts, registered, seed, rng):
    dut = MacCore(lanes, 2, cuts=cuts, registered=registered)
    assert dut.latency == len(cuts) + registered
    t_a, zs = activations(rng, lanes, 20)
    a = planes(t_a, zs)
    run = run_stream(dut, [{"a": x, "w": [x, x]} for x in a], seed=seed)
    assert set(run.latencies) == {dut.latency}
    assert run.in_cycles == list(range(run.in_cycles[0], run.in_cycles[0] + len(a)))


def test_levels():
    # Independent of the planner: an adder tree over n 2-bit lane terms has ceil(log2 n)
    # levels; the lane logic is one more.
    assert [core_levels(n, "adder") for n in (1, 2, 3, 64, 256)] == [1, 2, 3, 7, 9]
    t_w = np.zeros((2, 8), np.int8)
    t_w[1, :2] = 1                                  # one pair term: a table and nothing else
    assert core_levels(8, "adder", t_w) == 4        # the streamed tree over 8 lanes is deeper
    assert MacCore(8, 2, weights=t_w, activation_sum=False).levels == core_levels(8)


ERRORS = [
    (dict(lanes=0), TypeError, "Lane count must be a positive integer, not 0"),
    (dict(lanes=4, channels=0), TypeError, "Channel count must be a positive integer, not 0"),
    (dict(lanes=4, tree="wallace"), ValueError,
     "Tree must be one of 'compressor', 'adder', not 'wallace'"),
    (dict(lanes=4, cuts=3), TypeError, "Cuts must be a set of logic levels, not 3"),
    (dict(lanes=4, cuts=[1, 6]), ValueError, "Cuts must be logic levels in 1..5, not 6"),
    (dict(lanes=4, registered=None), TypeError, "registered must be a bool, not None"),
    (dict(lanes=4, activation_sum=1), TypeError, "activation_sum must be a bool, not 1"),
    (dict(lanes=4, channels=2, weights=np.zeros((2, 3))), ValueError,
     "Weights must have shape (2, 4), not (2, 3)"),
    (dict(lanes=2, weights=[[2, 0]]), ValueError,
     "Weights must contain only trits (-1, 0, +1), not 2 at index (0, 0)"),
]


@pytest.mark.parametrize("kwargs,error,message", ERRORS)
def test_parameter_errors(kwargs, error, message):
    assert_rejects(error, message, lambda: MacCore(**kwargs))
