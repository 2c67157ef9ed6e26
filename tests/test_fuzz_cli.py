"""`rtn-hw` on random argument vectors: words from its own vocabulary (commands, options,
units, parameters) mixed with hostile values. Whatever the argv, main() returns 0 or 2, never
raises, and a 2 comes with exactly one `rtn-hw: error:` line. Nothing slow is reached: the
sweep, the exports and the serial port are stand-ins (the real ones are tested elsewhere).
Seeds and budgets: tests/fuzzing.py."""

from hypothesis import given, strategies as st

from board_model import ModelTransport
from fuzzing import examples, fuzz_seed, seeded  # noqa: F401 (fuzz_seed: autouse fixture)
from rtn_hw import cli, host, units, weights

DIGITS = weights.load_digits_test()

VALUES = st.one_of(
    st.sampled_from(["", ",", " , ", "0", "-1", "1", "2", "64", "4096", "4097", "1e30", "1e400",
                     "inf", "nan", "-inf", "0x10", "9" * 30, "Q8.8", "Q99.99", "none", "true",
                     "ecp5-85k", "ice40-up5k", "ternary_dot", "fp32_dot", "module", ".v",
                     "x.v", "/nonexistent/x.v", "/dev/null", "/dev/zero", "tcp://h:1"]),
    st.text(max_size=6))
PARAMS = st.builds(lambda name, value: f"{name}={value}",
                   st.sampled_from(sorted({p.name for u in units.UNITS.values()
                                           for p in u.params} | {"bogus"})), VALUES)
WORDS = st.one_of(
    st.sampled_from(["verilog", "synth", "run", "--list", "--docs", "--targets", "--units",
                     "--lanes", "--seeds", "--jobs", "--port", "--images", "--digits-test",
                     "--baud", "--timeout", "-p", "-o", "--name", "--help", "--version",
                     "--bogus"]),
    st.sampled_from(sorted(units.UNITS)), PARAMS, VALUES)


def _refuse_export(unit, params, **options):
    raise units.ParameterError(f"{unit}: (export skipped in the fuzz test)")


def _stand_ins(monkeypatch):
    from rtn_hw.flow import synth, tables, verilog
    monkeypatch.setattr(synth, "run_sweep", lambda progress, **chosen: {"files": {}})
    monkeypatch.setattr(tables, "update_docs", lambda: [])
    # The export is checked up to where it would elaborate: it stops there, as a unit's own
    # validation error would.
    monkeypatch.setattr(verilog, "export", _refuse_export)
    monkeypatch.setattr(host, "SerialTransport", lambda port, baud: ModelTransport())
    monkeypatch.setattr(weights, "load_digits_test", lambda: (DIGITS[0][:3], DIGITS[1][:3]))


# capsys and monkeypatch serve every example of one test run: readouterr() empties the
# capture, and the stand-ins are the same for all of them.
@seeded
@examples(300, fixtures=True)
@given(argv=st.one_of(
    st.lists(WORDS, max_size=8),
    st.builds(lambda command, rest: [command, *rest],
              st.sampled_from(["verilog", "synth", "run"]), st.lists(WORDS, max_size=8))))
def test_random_argv(monkeypatch, capsys, argv):
    _stand_ins(monkeypatch)
    status = cli.main(argv)
    out, err = capsys.readouterr()
    assert status in (0, 2), (argv, status, err)
    assert "Traceback" not in err
    if status == 2:
        assert err.startswith("rtn-hw: error: ") and err.count("\n") == 1, (argv, err)
