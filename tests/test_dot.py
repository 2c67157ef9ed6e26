"""TernaryDot against the golden model (`ternary_dot`, `activation_sum`), bit for bit."""

import numpy as np
import pytest

from rtn_hw import model
from rtn_hw.gateware.dot import TernaryDot, dot_cuts, dot_levels
from rtn_hw.gateware.simulate import run_stream

from helpers import assert_rejects

LANES = [1, 3, 16, 64, 256]
RANDOM = 2000


def alternating(n, first):
    return [first * (1 if k % 2 == 0 else -1) for k in range(n)]


def corner_pairs(n):
    """(t_w, t_a, zero_sign_w, zero_sign_a): all zero, all ±1, alternating signs, and zeros
    whose don't-care sign bit is set."""
    zero, plus, minus = [0] * n, [1] * n, [-1] * n
    ones, none = [True] * n, [False] * n
    cases = [(zero, zero, none, none), (zero, zero, ones, ones), (plus, plus, none, none),
             (minus, minus, none, none), (plus, minus, none, none), (minus, plus, none, none),
             (alternating(n, 1), alternating(n, 1), none, none),
             (alternating(n, 1), alternating(n, -1), none, none),
             (alternating(n, 1), plus, none, none),
             (zero, plus, ones, none), (plus, zero, none, ones), (minus, zero, none, ones),
             ([k % 3 - 1 for k in range(n)], [(k + 1) % 3 - 1 for k in range(n)], ones, ones)]
    return cases


def random_pairs(rng, n, count):
    """Each vector with its own sparsity (fraction of zeros) and sign balance; zeros get
    random don't-care sign bits."""
    def trits():
        sparsity = rng.random((count, 1))
        positive = rng.random((count, 1))
        nonzero = rng.random((count, n)) >= sparsity
        return np.where(rng.random((count, n)) < positive, 1, -1) * nonzero
    tw, ta = trits(), trits()
    return [(tw[k], ta[k], rng.random(n) < 0.5, rng.random(n) < 0.5) for k in range(count)]


def stimulus(cases, n):
    """Hardware payloads and golden results for a list of corner/random cases."""
    tw = np.array([c[0] for c in cases], dtype=np.int8).reshape(len(cases), n)
    ta = np.array([c[1] for c in cases], dtype=np.int8).reshape(len(cases), n)
    zw = np.array([c[2] for c in cases], dtype=bool).reshape(len(cases), n)
    za = np.array([c[3] for c in cases], dtype=bool).reshape(len(cases), n)
    w, a = model.pack(tw, zero_sign=zw), model.pack(ta, zero_sign=za)
    d = model.ternary_dot(w, a)
    s_a = model.activation_sum(a)
    assert (d == (tw.astype(int) * ta).sum(axis=1)).all()
    payloads = [{"w": {"nz": model.planes_to_int(w[0][k]), "sg": model.planes_to_int(w[1][k])},
                 "a": {"nz": model.planes_to_int(a[0][k]), "sg": model.planes_to_int(a[1][k])}}
                for k in range(len(cases))]
    return payloads, [int(v) for v in d], [int(v) for v in s_a]


def expected(d, s_a, activation_sum=True):
    if activation_sum:
        return [{"d": x, "s_a": y} for x, y in zip(d, s_a)]
    return [{"d": x} for x in d]


@pytest.mark.parametrize("lanes", LANES)
def test_dot_matches_golden(lanes, seed, rng):
    dut = TernaryDot(lanes)
    cases = corner_pairs(lanes) + random_pairs(rng, lanes, RANDOM)
    payloads, d, s_a = stimulus(cases, lanes)
    run = run_stream(dut, payloads, seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == expected(d, s_a)


@pytest.mark.parametrize("lanes,pipeline", [(1, 0), (1, 2), (3, 2), (16, 0), (16, 4),
                                            (64, 5), (256, 3)])
def test_pipeline_depths(lanes, pipeline, seed, rng):
    dut = TernaryDot(lanes, pipeline=pipeline)
    cases = corner_pairs(lanes) + random_pairs(rng, lanes, 300)
    payloads, d, s_a = stimulus(cases, lanes)
    run = run_stream(dut, payloads, seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == expected(d, s_a)


@pytest.mark.parametrize("lanes,pipeline", [(3, 0), (64, 2), (256, 9)])
def test_adder_trees(lanes, pipeline, seed, rng):
    dut = TernaryDot(lanes, pipeline=pipeline, tree="adder")
    assert (dut.tree, dut.latency) == ("adder", pipeline)
    cases = corner_pairs(lanes) + random_pairs(rng, lanes, 300)
    payloads, d, s_a = stimulus(cases, lanes)
    run = run_stream(dut, payloads, seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == expected(d, s_a)


@pytest.mark.parametrize("lanes", [3, 64])
def test_without_activation_sum(lanes, seed, rng):
    dut = TernaryDot(lanes, pipeline=2, activation_sum=False)
    assert set(dut.o.payload.shape().members) == {"d"}
    cases = corner_pairs(lanes) + random_pairs(rng, lanes, 300)
    payloads, d, s_a = stimulus(cases, lanes)
    run = run_stream(dut, payloads, seed=seed, idle=0.2, stall=0.3)
    assert run.outputs == expected(d, s_a, activation_sum=False)


@pytest.mark.parametrize("lanes,pipeline", [(1, 0), (3, 1), (16, 1), (16, 3), (64, 2),
                                            (256, 1)])
def test_latency_and_throughput(lanes, pipeline, seed, rng):
    dut = TernaryDot(lanes, pipeline=pipeline)
    assert dut.latency == pipeline
    payloads, d, s_a = stimulus(random_pairs(rng, lanes, 64), lanes)
    run = run_stream(dut, payloads, seed=seed)
    assert run.outputs == expected(d, s_a)
    assert run.latencies == [pipeline] * len(payloads)
    assert run.out_cycles == list(range(run.out_cycles[0], run.out_cycles[0] + len(payloads)))


def test_ports_and_properties():
    dut = TernaryDot(256, pipeline=3)
    assert (dut.lanes, dut.pipeline, dut.activation_sum, dut.latency) == (256, 3, True, 3)
    layout = dut.i.payload.shape()
    assert layout.size == 4 * 256
    out = dut.o.payload.shape()
    assert {name: field.shape.width for name, field in out} == {"d": 10, "s_a": 10}
    assert all(field.shape.signed for _, field in out)
    with pytest.raises(AttributeError):
        dut.lanes = 8


def test_levels_and_cuts():
    for lanes in LANES:
        levels = dot_levels(lanes)
        for pipeline in range(1, levels + 1):
            cuts = dot_cuts(lanes, pipeline)
            assert len(cuts) == pipeline - 1
            assert all(1 <= cut < levels for cut in cuts)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"lanes": 0}, TypeError, "Lane count must be a positive integer, not 0"),
    ({"lanes": "8"}, TypeError, "Lane count must be a positive integer, not '8'"),
    ({"lanes": 8, "pipeline": -1}, TypeError,
     "Pipeline depth must be a non-negative integer, not -1"),
    ({"lanes": 8, "pipeline": 1.0}, TypeError,
     "Pipeline depth must be a non-negative integer, not 1.0"),
    ({"lanes": 8, "pipeline": 99}, ValueError,
     f"Pipeline depth must be at most {dot_levels(8)} for 8 lanes, not 99"),
    ({"lanes": 8, "activation_sum": 1}, TypeError, "activation_sum must be a bool, not 1"),
    ({"lanes": 8, "tree": "wallace"}, ValueError,
     "Tree must be one of 'compressor', 'adder', not 'wallace'"),
])
def test_parameter_errors(kwargs, error, message):
    assert_rejects(error, message, lambda: TernaryDot(**kwargs))
