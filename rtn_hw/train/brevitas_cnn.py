"""`python -m rtn_hw.train.brevitas_cnn`: a Brevitas ternary CNN on the digits, exported as QONNX.

Makes the real Brevitas CNNs that `rtn-hw import` is tested on (tests/data/, docs/qonnx.md):

    python -m rtn_hw.train.brevitas_cnn --variant const -o tests/data/brevitas_cnn_const.onnx

The model (the `train` extra, as `rtn_hw.train.brevitas_mlp`, whose quantizers, training loop
and exporter it uses):

    pixels p (B, 1, 8, 8) → 2p/16 - 1 → QuantIdentity → [QuantConv2d k×k (padding, no bias)
    → BatchNorm2d → QuantIdentity → MaxPool2d 2×2] per entry of --channels → flatten →
    [QuantLinear → BatchNorm1d → QuantIdentity] per entry of --hidden → QuantLinear → logits

Brevitas exports a padded QuantConv2d as an ONNX Conv with `pads`, which pads the quantized
activations with real zeros. The weights format pads with trit 0, which decodes to the
activation's offset β_a = -scale·zero_point: the two agree only for a zero point of 0. So the
`const` variant (zero points 0) imports, and the `zero-point` variant with --padding > 0 is
refused at its second convolution (its input has a learned zero point): the test that
`rtn-hw import` checks Brevitas' real padding semantics.
"""

import argparse
import sys
import time

import numpy as np

try:
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from brevitas.quant import SignedTernaryActPerTensorConst
    from torch import nn
except ImportError as e:  # the `train` extra is optional
    sys.exit(f"python -m rtn_hw.train.brevitas_cnn needs the train extra "
             f"(pip install -e '.[train,onnx]'): {e}")

from . import data
from .brevitas_mlp import VARIANTS, export, quantizers, train


class BrevitasCNN(nn.Module):
    def __init__(self, shape, channels, hidden, classes, variant, pixel_max, kernel=3,
                 padding=1):
        super().__init__()
        weight_quant, act_quant = quantizers(variant)
        self.half_range = pixel_max / 2
        # The pixels' quantizer keeps a zero point of 0: the weights format's input encoding
        # is T(2p/pixel_max - 1) exactly.
        self.input_quant = QuantIdentity(act_quant=SignedTernaryActPerTensorConst)
        c, h, w = shape
        convs = []
        for p in channels:
            convs.append(QuantConv2d(c, p, kernel, padding=padding, bias=False,
                                     weight_quant=weight_quant))
            h, w = (h + 2 * padding - kernel + 1) // 2, (w + 2 * padding - kernel + 1) // 2
            c = p
        self.convs = nn.ModuleList(convs)
        self.conv_bns = nn.ModuleList(nn.BatchNorm2d(p) for p in channels)
        self.conv_acts = nn.ModuleList(QuantIdentity(act_quant=act_quant) for _ in channels)
        self.pool = nn.MaxPool2d(2)
        sizes = (c * h * w,) + tuple(hidden) + (classes,)
        self.fcs = nn.ModuleList(QuantLinear(a, b, bias=False, weight_quant=weight_quant)
                                 for a, b in zip(sizes[:-1], sizes[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(p) for p in sizes[1:-1])
        self.acts = nn.ModuleList(QuantIdentity(act_quant=act_quant) for _ in sizes[1:-1])

    def forward(self, pixels):
        x = self.input_quant(pixels / self.half_range - 1.0)
        for conv, bn, act in zip(self.convs, self.conv_bns, self.conv_acts):
            x = self.pool(act(bn(conv(x))))
        x = x.flatten(1)
        for fc, bn, act in zip(self.fcs, self.bns, self.acts):
            x = act(bn(fc(x)))
        return self.fcs[-1](x)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rtn_hw.train.brevitas_cnn",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS, default="const")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--hidden", type=int, nargs="*", default=[])
    parser.add_argument("--padding", type=int, default=1)
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.onnx")
    args = parser.parse_args(argv)
    dataset = data.load_digits()
    shape = (1,) + tuple(dataset.shape)                 # NCHW: one channel
    start = time.perf_counter()
    net, accuracy = train(dataset, lambda: BrevitasCNN(
        shape, args.channels, args.hidden, dataset.classes, args.variant, dataset.pixel_max,
        padding=args.padding), args.seed, args.epochs, input_shape=shape)
    command = (f"python -m rtn_hw.train.brevitas_cnn --variant {args.variant} --seed "
               f"{args.seed} --epochs {args.epochs} --channels "
               f"{' '.join(map(str, args.channels))} --hidden "
               f"{' '.join(map(str, args.hidden))} --padding {args.padding} -o {args.output}")
    export(net, args.output, shape, {"rtn_hw.seed": str(args.seed), "rtn_hw.command": command,
                                     "rtn_hw.torch_accuracy": f"{accuracy:.4f}"})
    print(f"{args.variant} CNN: torch test accuracy {100 * accuracy:.2f} % after {args.epochs} "
          f"epochs ({time.perf_counter() - start:.0f} s); wrote {args.output}")


if __name__ == "__main__":
    main()
