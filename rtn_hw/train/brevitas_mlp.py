"""`python -m rtn_hw.train.brevitas_mlp`: a Brevitas ternary MLP on the digits, exported as QONNX.

Makes the real Brevitas models that `rtn-hw import` is tested on (tests/data/, docs/qonnx.md):

    python -m rtn_hw.train.brevitas_mlp --variant const -o tests/data/brevitas_const.onnx
    python -m rtn_hw.train.brevitas_mlp --variant zero-point -o tests/data/brevitas_zp.onnx

The model (the `train` extra: torch 2.13.0 CPU, brevitas 0.13.4, scikit-learn's digits):

    pixels p → 2p/16 - 1 → QuantIdentity → [QuantLinear (no bias) → BatchNorm1d → QuantIdentity]
    × 2 → QuantLinear → logits

with Brevitas' own ternary quantizers, `SignedTernaryWeightPerTensorConst` and
`SignedTernaryActPerTensorConst` (2-bit, signed, narrow range, constant scale; zero point 0).
The `zero-point` variant gives every quantizer a learned zero point (Brevitas'
`ParameterZeroPoint`), so the QONNX Quant nodes carry RTN's offset β = -scale·zero_point, the
form FINN rejects. Training is seeded and deterministic (one CPU thread); the seed and the
command are written into the model's metadata (`rtn_hw.seed`, `rtn_hw.command`).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import torch
    from brevitas.core.zero_point import ParameterZeroPoint
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantIdentity, QuantLinear
    from brevitas.quant import SignedTernaryActPerTensorConst, SignedTernaryWeightPerTensorConst
    from torch import nn
except ImportError as e:  # the `train` extra is optional
    sys.exit(f"python -m rtn_hw.train.brevitas_mlp needs the train extra "
             f"(pip install -e '.[train,onnx]'): {e}")

from ..files import write_atomic
from . import data

VARIANTS = ("const", "zero-point")


class ZeroPointTernaryWeight(SignedTernaryWeightPerTensorConst):
    """Brevitas' ternary weights with a learned per-tensor zero point."""
    zero_point_impl = ParameterZeroPoint
    zero_point_init = 0.0
    quantize_zero_point = False


class ZeroPointTernaryAct(SignedTernaryActPerTensorConst):
    """Brevitas' ternary activations with a learned per-tensor zero point."""
    zero_point_impl = ParameterZeroPoint
    zero_point_init = 0.0
    quantize_zero_point = False


def quantizers(variant):
    """(weight quantizer, activation quantizer) of a variant: Brevitas' constant-scale ternary
    ones, or those with a learned zero point."""
    if variant == "const":
        return SignedTernaryWeightPerTensorConst, SignedTernaryActPerTensorConst
    return ZeroPointTernaryWeight, ZeroPointTernaryAct


class BrevitasMLP(nn.Module):
    def __init__(self, sizes, variant, pixel_max):
        super().__init__()
        weight_quant, act_quant = quantizers(variant)
        self.half_range = pixel_max / 2
        # The pixels' quantizer keeps a zero point of 0: the weights format's input encoding
        # is T(2p/pixel_max - 1) exactly.
        self.input_quant = QuantIdentity(act_quant=SignedTernaryActPerTensorConst)
        self.fcs = nn.ModuleList(QuantLinear(a, b, bias=False, weight_quant=weight_quant)
                                 for a, b in zip(sizes[:-1], sizes[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(p) for p in sizes[1:-1])
        self.acts = nn.ModuleList(QuantIdentity(act_quant=act_quant) for _ in sizes[1:-1])

    def forward(self, pixels):
        x = self.input_quant(pixels / self.half_range - 1.0)
        for fc, bn, act in zip(self.fcs, self.bns, self.acts):
            x = act(bn(fc(x)))
        return self.fcs[-1](x)


def train(dataset, make, seed, epochs, batch=32, lr=1e-2, input_shape=None):
    """`make()` → the model, built after seeding; trained with Adam on the training split,
    deterministic (one CPU thread); returns (model, torch test accuracy). The images enter as
    (B, features) pixels, or (B, *input_shape)."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    net = make()
    def images(split):
        split = split.astype(np.float32)
        return torch.as_tensor(split if input_shape is None
                               else split.reshape((len(split),) + tuple(input_shape)))
    x = images(dataset.train_images)
    y = torch.as_tensor(dataset.train_labels.astype(np.int64))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed + 1)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=order)
        for k in range(0, len(x) - 1, batch):
            index = perm[k:k + batch]
            loss = loss_fn(net(x[index]), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        test = images(dataset.test_images)
        accuracy = float((net(test).argmax(1).numpy() == dataset.test_labels).mean())
    return net, accuracy


def export(net, out, input_shape, metadata):
    """QONNX through Brevitas' exporter for inputs (1, *input_shape), then the metadata added;
    written atomically."""
    import onnx
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_qonnx(net, torch.zeros((1,) + tuple(input_shape)), str(path))
        proto = onnx.load(str(path))
    _strip_provenance(proto)
    onnx.helper.set_model_props(proto, metadata)
    write_atomic(out, proto.SerializeToString())


def _strip_provenance(proto):
    """torch's exporter records Python stack traces (with this machine's paths) and its own
    bookkeeping on every node and tensor; the model needs none of it."""
    graph = proto.graph
    for item in [*graph.node, *graph.input, *graph.output, *graph.value_info,
                 *graph.initializer]:
        item.doc_string = ""
        del item.metadata_props[:]
    graph.doc_string = ""
    del graph.metadata_props[:]
    del proto.metadata_props[:]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rtn_hw.train.brevitas_mlp",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS, default="const")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.onnx")
    args = parser.parse_args(argv)
    dataset = data.load_digits()
    start = time.perf_counter()
    sizes = (int(np.prod(dataset.shape)),) + tuple(args.hidden) + (dataset.classes,)
    net, accuracy = train(dataset, lambda: BrevitasMLP(sizes, args.variant, dataset.pixel_max),
                          args.seed, args.epochs)
    command = (f"python -m rtn_hw.train.brevitas_mlp --variant {args.variant} --seed "
               f"{args.seed} --epochs {args.epochs} --hidden "
               f"{' '.join(map(str, args.hidden))} -o {args.output}")
    export(net, args.output, (int(np.prod(dataset.shape)),),
           {"rtn_hw.seed": str(args.seed), "rtn_hw.command": command,
            "rtn_hw.torch_accuracy": f"{accuracy:.4f}"})
    print(f"{args.variant}: torch test accuracy {100 * accuracy:.2f} % after {args.epochs} "
          f"epochs ({time.perf_counter() - start:.0f} s); wrote {args.output}")


if __name__ == "__main__":
    main()
