"""The dataflow engine's Pareto sweep (issue 13): the shipped digits MLP at foldings from the
smallest to the fully unfolded design on the ECP5-85k, plus the fastest folding that fits the
iCE40 UP5K, each synthesized, placed and routed and simulated on every digits test image.

    .venv/bin/python bench/dataflow_pareto.py [--network weights/X.json]
                                              [--ecp5 FOLDING ...] [--ice40 FOLDING ...]
                                              [--sim-only FOLDING ...] [--seeds 1]
                                              [--sim-images N] [--phase all|synth|sim]
    make dataflow-report                      (the defaults below)

`--network` (default the shipped digits MLP) puts another network's rows into the same
report: the rows of the other networks already in build/reports/dataflow.json are kept. A
CNN's rows are synthesized and routed only (its test images are not simulated here: the
demo's simulation is MLP-only), and have no default foldings.

Per folding (text as `rtn_hw.gateware.dataflow.parse_foldings` reads it):

* yosys counts and the routed Fmax come from the synthesis flow itself (`rtn_hw.flow.synth.
  execute`: one sweep row of unit dataflow_engine with the folding as its `folding`
  parameter, the sweep's scripts, nextpnr options, 20-minute route limit and cache), so a row
  already routed costs nothing; a folding that does not fit gets its yosys counts only;
* `ii_cycles`, `latency_cycles` and `hw_golden_agreement`: the test images go through the
  engine back to back with the output always ready (Verilator through `rtn_hw.demo.run_demo`
  when it has the dataflow engine, else the Amaranth simulator, `run_stream`); every result is
  compared with `Network.forward`, the cycles between results must all equal the predicted
  II and the first image's latency the predicted latency;
* images/s = routed Fmax / II.

The iCE40 foldings are tried in the order given (fastest first); the first that fits and
routes is reported, and `ice40_up5k` says which (or that none fits, with the attempts).
Written atomically after every row (`complete` false until the last): build/reports/
dataflow.json, dataflow.md and dataflow.png, with the tool versions, seeds and the load
average before and after each row. A row whose synthesis or route fails is reported with
the error in its `notes`, and the sweep goes on.
"""

import argparse
import datetime
import io
import json
import os
import pathlib
import sys
import time
import traceback

import numpy as np

from rtn_hw import fold, weights
from rtn_hw.fold import buffers_for
from rtn_hw.files import update_json, write_atomic
from rtn_hw.flow import cache, synth
from rtn_hw.flow.devices import DEVICES
from rtn_hw.flow.plan import Run
from rtn_hw.gateware.dataflow import folding_texts, latency, parse_foldings, predicted_ii

REPORT = "build/reports/dataflow.json"
SIM_CACHE = "build/dataflow_pareto/simulated.json"
# The gateware's hash as this process imported it (a key of SIM_CACHE).
SOURCE = cache.source_hash()
# Smallest to unfolded: the II of each is in the comment.
ECP5_FOLDINGS = (
    "smallest",                                     # 16,384
    "64x1,128x1,2x5",                               # 128, fold.fewest_lanes(network, 128)
    "64x4:logic,128x4:logic,8x5:logic",             # 32, weights in LUTs
    "64x16:logic,128x16:logic,32x5:logic",          # 8
    "16x128:logic,32x128:logic,32x10:logic",        # 4
    "unfolded",                                     # 1, does not fit
)
# UP5K, fastest first: one channel per layer keeps the multipliers at 2 a layer (of 8 SB_MAC16;
# 64x1,128x1,2x5 needs 14); the lanes only widen the chunk. With block-RAM buffers
# (fold.buffers_for) II 512 fits (4,851 of 5,280 logic cells, 25 block RAMs).
ICE40_FOLDINGS = ("32x1,64x1,6x1", "16x1,32x1,3x1", "8x1,16x1,2x1")  # II 256, 512, 1,024
# The issue's baseline: NetworkEngine 64 x 8 at 49.6 MHz, 81 cycles per image and the next
# image a cycle after the result (82 cycles, as rtn_hw.demo measures it).
NETWORK_ENGINE = {"images_per_second": round(49.6e6 / 82), "fmax_mhz": 49.6, "lut4": 3241,
                  "cycles_per_image": 82,
                  "source": "docs/units/network_engine.md (64 lanes x 8 channels, ECP5-85k)"}


def canonical(network, text):
    return ",".join(folding_texts(parse_foldings(text, network)))


def synthesize(network, target, text, seeds, manifest):
    """The flow's record of one dataflow_engine row at folding `text` (a failure: a record
    with the error in its notes)."""
    foldings = parse_foldings(text, network)
    params = (("folding", canonical(network, text)),
              *((("weights", manifest),) if manifest != "shipped" else ()),
              *((("buffers", buffers_for(target)),) if buffers_for(target) != "fifo"
                else ()))
    run = Run("dataflow_engine", predicted_ii(network, foldings), target, "dsp", tuple(seeds),
              params)
    try:
        records, _ = synth.execute([run], jobs=1, power=False, progress=print)
        return records[0]
    except Exception as error:  # the report must still be written: the row says why
        traceback.print_exc()
        return {"fits": None, "notes": [f"synthesis failed: {type(error).__name__}: "
                                        f"{str(error).splitlines()[0] if str(error) else ''}"]}


def _dataflow_demo():
    """`rtn_hw.demo.run_demo` if it can run the dataflow engine (issue 13's demo), else None."""
    import inspect
    from rtn_hw import demo
    run_demo = getattr(demo, "run_demo", None)
    if run_demo is None or "engine" not in inspect.signature(run_demo).parameters:
        return None
    return run_demo


def simulate(network, foldings, images, seed, buffers="fifo"):
    """(simulator, logits, classes, input cycles, output cycles) of `images` back to back:
    Verilator through `rtn_hw.demo.run_demo` when it has the dataflow engine (FIFO buffers),
    else Amaranth."""
    run_demo = _dataflow_demo() if buffers == "fifo" else None
    if run_demo is not None:
        from rtn_hw.demo import SimulationError
        try:
            run = run_demo(images, network, engine="dataflow", foldings=foldings, seed=seed,
                           simulator="verilator")
            return ("verilator", np.asarray(run.logits), np.asarray(run.classes),
                    list(run.in_cycles), list(run.out_cycles))
        except SimulationError as error:
            print(f"Verilator: {error}; the Amaranth simulator instead", flush=True)
    from rtn_hw.gateware.dataflow import DataflowEngine
    from rtn_hw.gateware.simulate import run_stream
    dut = DataflowEngine(network, foldings, buffers)
    run = run_stream(dut, [[int(p) for p in image] for image in images], seed=seed,
                     steady=len(images), timeout=4 * (dut.latency + 4 * dut.ii) + 200)
    logits = np.array([out["logits"] for out in run.outputs], dtype=np.int64)
    classes = np.array([out["label"] for out in run.outputs], dtype=np.int64)
    return "amaranth", logits, classes, run.in_cycles, run.out_cycles


def check(network, text, images, seed, sim_images, buffers="fifo"):
    """Simulated II, latency and agreement with the golden network of one folding, from
    SIM_CACHE when the same sources simulated the same images."""
    foldings = parse_foldings(text, network)
    ii, want_latency = predicted_ii(network, foldings), latency(network, foldings, buffers)
    count = len(images)
    if sim_images is not None and ii * count > sim_images:
        count = max(4, sim_images // ii)
    key = f"{canonical(network, text)}|{buffers}|{count}|{seed}|{SOURCE}"
    try:
        return json.loads(pathlib.Path(SIM_CACHE).read_text())[key]
    except (OSError, ValueError, KeyError):
        pass
    started = time.monotonic()
    simulator, logits, classes, ins, outs = simulate(network, foldings, images[:count], seed,
                                                     buffers)
    want_logits, want_classes = network.forward(images[:count])
    agree = int(sum(np.array_equal(a, b) and c == d for a, b, c, d
                    in zip(logits, want_logits, classes, want_classes)))
    gaps = sorted(set(np.diff(outs).tolist()))
    result = {"simulator": simulator, "images": count, "seed": seed,
              "ii_cycles": gaps[0] if len(gaps) == 1 else gaps,
              "ii_predicted": ii, "ii_matches": gaps == [ii],
              "latency_cycles": outs[0] - ins[0], "latency_predicted": want_latency,
              "hw_golden_agreement": agree / count, "agreeing_images": agree,
              "seconds": round(time.monotonic() - started, 1)}
    update_json(SIM_CACHE, lambda cached: {**cached, key: result})
    return result


def model_error(network, foldings, target, counts):
    """The folding model's estimate (`rtn_hw.fold.estimate`, fitted to ECP5-85k counts) and, on
    the ECP5 with yosys counts, its relative error on LUT4 places and FF (the issue's 15 %)."""
    if network.convolutional:
        return {"note": "the model is the MLP stages' only"}
    e = fold.estimate(network, foldings)
    out = {"lut4": e.lut4, "ff": e.ff, "dsp": e.dsp, "bram": e.bram}
    if target == "ecp5-85k" and counts.get("lut4_places"):
        out["lut4_error"] = round(e.lut4 / counts["lut4_places"] - 1, 4)
        out["ff_error"] = round(e.ff / counts["ff"] - 1, 4) if counts.get("ff") else None
    else:
        out["note"] = "fitted to ECP5-85k counts only: no error stated on this target"
    return out


def row(network, manifest, target, text, seeds, images, seed, sim_images, simulate_it=True,
        phase="all"):
    load_before = os.getloadavg()
    record = synthesize(network, target, text, seeds, manifest) if phase != "sim" else {}
    foldings = parse_foldings(text, network)
    fmax = record.get("fmax_mhz")
    out = {"network": manifest, "target": target, "folding": canonical(network, text),
           "buffers": buffers_for(target),
           "foldings": [{"layer": layer.name, "lanes": f.lanes, "channels": f.channels,
                         "storage": f.storage} for layer, f in zip(network.layers, foldings)
                        if f is not None],
           "ii_predicted": predicted_ii(network, foldings),
           "fmax_mhz": fmax, "fmax_by_seed": record.get("fmax_by_seed"),
           **{k: record.get(k) for k in ("lut", "ff", "carry", "dsp", "bram", "lutram",
                                         "fits", "notes", "seconds", "cached")}}
    out["notes"] = list(out["notes"] or [])
    out["lut4"] = out.pop("lut")
    if out["lut4"] is not None and out["carry"] is not None:
        out["lut4_places"] = out["lut4"] + 2 * out["carry"] if target == "ecp5-85k" \
            else out["lut4"]
    out["model"] = model_error(network, foldings, target, out)
    if simulate_it and phase != "synth" and images is not None:
        out.update(check(network, text, images, seed, sim_images))
    else:
        out.update({"ii_cycles": None, "latency_cycles": None, "hw_golden_agreement": None})
    out["images_per_second"] = round(fmax * 1e6 / out["ii_predicted"]) if fmax else None
    if out["images_per_second"] and out["lut4"]:
        out["images_per_second_per_lut4"] = round(out["images_per_second"] / out["lut4"], 1)
    out["load_average"] = {"before": [round(v, 2) for v in load_before],
                           "after": [round(v, 2) for v in os.getloadavg()]}
    print(f"{target} {out['folding']}: II {out['ii_cycles']} (predicted {out['ii_predicted']}) "
          f"LUT4 {out['lut4']} CCU2C {out['carry']} FF {out['ff']} DSP {out['dsp']} BRAM "
          f"{out['bram']} fits {out['fits']} Fmax {fmax} MHz, {out['images_per_second']} "
          f"images/s, agreement {out['hw_golden_agreement']}", flush=True)
    return out


def markdown(report):
    up5k = report.get("ice40_up5k") or {}
    lines = [f"# Dataflow engine Pareto sweep ({report['generated']})", "",
             f"`{report['command']}`" + ("" if report.get("complete") else
                                         " (**incomplete**: cut off before its last row)")
             + "; tools: " + ", ".join(f"{k} {v}" for k, v in report["tool_versions"].items()),
             "", f"iCE40 UP5K: {up5k.get('summary', 'not tried')}", "",
             "| network | target | folding | II sim / pred. | latency | Fmax MHz | images/s | "
             "LUT4 | carry | FF | DSP | BRAM | fits | model LUT4 (error) | agreement | "
             "load (1 min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        def num(v):
            return "–" if v is None else f"{v:,}" if isinstance(v, int) else str(v)
        agreement = r.get("hw_golden_agreement")
        agreement = "–" if agreement is None else f"{r['agreeing_images']} / {r['images']}"
        lines.append(
            f"| {r.get('network', 'shipped')} | {r['target']} | `{r['folding']}` | "
            f"{num(r.get('ii_cycles'))} / "
            f"{num(r['ii_predicted'])} | {num(r.get('latency_cycles'))} | {num(r['fmax_mhz'])} | "
            f"{num(r['images_per_second'])} | {num(r['lut4'])} | {num(r['carry'])} | "
            f"{num(r['ff'])} | {num(r['dsp'])} | {num(r['bram'])} | {r['fits']} | "
            f"{model_text(r)} | {agreement} | "
            f"{r['load_average']['before'][0]} |")
    notes = [f"* {r['target']} `{r['folding']}`: {'; '.join(r['notes'])}"
             for r in report["rows"] if r.get("notes")]
    return "\n".join(lines + [""] + notes) + "\n"


def model_text(r):
    """The model's LUT4 (LUT4 + 2·CCU2C on the ECP5) and its error, for the report's table."""
    model = r.get("model") or {}
    if model.get("lut4") is None:
        return "–"
    error = model.get("lut4_error")
    return f"{model['lut4']:,}" + (f" ({100 * error:+.1f} %)" if error is not None else "")


def plot(report):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for r in report["rows"]:
        if (r["target"] != "ecp5-85k" or not r.get("lut4")
                or r.get("network", "shipped") != "shipped"):
            continue
        rate = r["images_per_second"]
        if rate is None:
            # Not routed: at an assumed 100 MHz, hollow.
            rate = 100e6 / r["ii_predicted"]
        ax.plot(r["lut4_places"], rate, "o", color="#000000" if r["fmax_mhz"] else "#999999",
                fillstyle="full" if r["fmax_mhz"] else "none")
        ax.annotate(f"II {r['ii_predicted']}", (r["lut4_places"], rate),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    ne = report["network_engine"]
    ax.plot(ne["lut4"], ne["images_per_second"], "s", color="#0072B2", label="NetworkEngine")
    ax.axvline(DEVICES["ecp5-85k"]["lut4"], color="#D55E00", linestyle=":",
               label="ECP5-85k LUT4")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("LUT4 places (LUT4 + 2 CCU2C)")
    ax.set_ylabel("images/s at the routed Fmax (hollow: not routed, at 100 MHz)")
    ax.set_title("Dataflow engine, digits MLP, ECP5-85k")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(write_atomic(REPORT.replace(".json", ".png"), buffer.getvalue()))


def commit():
    """The checked-out commit (with "+changes" when the tree differs), or None."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                "rtn_hw"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty.strip() else "")


def up5k_summary(rows):
    """Which iCE40 UP5K folding is reported, or that none fits, with the attempts."""
    tried = [r for r in rows if r["target"] == "ice40-up5k"]
    if not tried:
        return None
    chosen = [r for r in tried if r["fits"] and r["fmax_mhz"]]
    attempts = [f"{r['folding']}: " + ("fits" if r["fits"] else "does not fit" if r["fits"]
                                        is False else "failed") +
                (f", {r['fmax_mhz']} MHz" if r["fmax_mhz"] else "") +
                (f" ({'; '.join(r['notes'])})" if r["notes"] else "") for r in tried]
    if chosen:
        r = chosen[0]
        summary = (f"fastest folding that fits and routes: {r['folding']} (II "
                   f"{r['ii_predicted']:,}, {r['fmax_mhz']} MHz, "
                   f"{r['images_per_second']:,} images/s)")
    else:
        summary = "no folding tried fits and routes: " + "; ".join(attempts)
    return {"folding": chosen[0]["folding"] if chosen else None, "summary": summary,
            "attempts": attempts}


def write_report(report, new_rows, manifest, complete):
    """Merge `new_rows` into REPORT (other networks' rows kept) and write it, .md and .png."""
    def merge(old):
        kept = [r for r in old.get("rows", []) if isinstance(r, dict)
                and r.get("network", "shipped") != manifest]
        networks = {**old.get("networks", {}), **report["networks"]}
        # ECP5 rows first (the UP5K's are tried first: they are quick, and cheap to lose).
        ordered = sorted(new_rows, key=lambda r: r["target"] != "ecp5-85k")
        merged = {**report, "networks": networks, "rows": kept + ordered, "complete": complete}
        if manifest != "shipped" and old.get("ice40_up5k"):
            merged["ice40_up5k"] = old["ice40_up5k"]
        return merged
    merged = update_json(REPORT, merge)
    write_atomic(REPORT.replace(".json", ".md"), markdown(merged))
    plot(merged)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="shipped", metavar="MANIFEST",
                        help="weights manifest (default: shipped = weights/rtn_digits.json)")
    parser.add_argument("--ecp5", nargs="*", default=None, metavar="FOLDING")
    parser.add_argument("--ice40", nargs="*", default=None, metavar="FOLDING")
    parser.add_argument("--phase", choices=("all", "synth", "sim"), default="all",
                        help="synth: synthesize and route only; sim: simulate only (both "
                             "cached; a later full run reuses them); all (default): both, then "
                             "the report")
    parser.add_argument("--sim-only", nargs="*", default=[], metavar="FOLDING",
                        help="ECP5 foldings only simulated, not synthesized (reported as such)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--seed", type=int, default=1, help="simulation seed")
    parser.add_argument("--sim-images", type=int, default=None,
                        help="simulate at most this many image-IIs of cycles per folding "
                             "(default: every test image)")
    args = parser.parse_args()
    shipped = args.network == "shipped"
    try:
        network = weights.load() if shipped else weights.load(args.network)
        ecp5 = args.ecp5 if args.ecp5 is not None else ECP5_FOLDINGS if shipped else ()
        ice40 = args.ice40 if args.ice40 is not None else ICE40_FOLDINGS if shipped else ()
        for text in (*ecp5, *ice40, *args.sim_only):
            parse_foldings(text, network)
    except (ValueError, TypeError) as error:
        parser.error(str(error).splitlines()[0])
    # The test images the demo simulates: the digits split, for an MLP of 64 inputs only.
    images = None
    if not network.convolutional and network.input.features == 64:
        images, _ = weights.load_digits_test()
    started = datetime.datetime.now(datetime.timezone.utc)
    report = {"format": 2, "generated": started.isoformat(timespec="seconds"),
              "command": " ".join(["python bench/dataflow_pareto.py", *sys.argv[1:]]),
              "networks": {args.network: {
                  "manifest": "weights/rtn_digits.json" if shipped else args.network,
                  "test_images": None if images is None else len(images),
                  "macs_per_image": network.macs_per_image}},
              "tool_versions": synth.tool_versions(),
              "commit": commit(), "source_hash": SOURCE,
              "seeds": {"nextpnr": args.seeds, "simulation": args.seed},
              "nextpnr": {t: {"args": list(synth.TARGETS[t].pnr_args),
                              "constraint_mhz": synth.TARGETS[t].freq_mhz,
                              "timeout_seconds": synth.NEXTPNR_TIMEOUT}
                          for t in ("ecp5-85k", "ice40-up5k")},
              "network_engine": NETWORK_ENGINE}
    rows = []

    def done_row(r, complete=False):
        rows.append(r)
        if args.phase == "all":
            if shipped:
                report["ice40_up5k"] = up5k_summary(rows)
            write_report(report, rows, args.network, complete)

    # The UP5K first (quick, and it needs its own attempts); then the ECP5 foldings.
    if args.phase != "sim":
        for text in ice40:
            r = row(network, args.network, "ice40-up5k", text, args.seeds, images, args.seed,
                    args.sim_images, simulate_it=False, phase=args.phase)
            if r["fits"] and r["fmax_mhz"]:
                # Simulated as on the ECP5 (SIM_CACHE: the same netlist's run is reused).
                if args.phase == "all" and images is not None:
                    r.update(check(network, text, images, args.seed, args.sim_images,
                                   buffers_for("ice40-up5k")))
                done_row(r)
                break
            done_row(r)
    for text in ecp5:
        done_row(row(network, args.network, "ecp5-85k", text, args.seeds, images, args.seed,
                     args.sim_images, phase=args.phase))
    for text in args.sim_only:
        r = row(network, args.network, "ecp5-85k", text, args.seeds, images, args.seed,
                args.sim_images, phase="sim")
        r["notes"] = ["simulated only: not synthesized in this run (--sim-only)"]
        done_row(r)
    if args.phase == "all":
        write_report(report, rows, args.network, True)
        print(f"wrote {REPORT} (+ .md, .png)")


if __name__ == "__main__":
    main()
