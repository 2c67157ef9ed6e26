"""RTN quantization-aware training (torch).

Quantizer (docs/rtn.md §1): x̂ = α·T(x) + β, T = clip to [-1, 1], then ±1 beyond Δ = 0.5, else 0.
T's gradient is the straight-through estimator of the clip (1 inside [-1, 1], 0 outside), but
α = softplus(ρ) > 0 and β enter x̂ by a product and a sum, so they receive gradients from every
element, including those where the STE is saturated (the paper's cure for vanishing gradients).

Granularity: weights (α_w, β_w) per output channel over latent float weights (clamped to
[-1, 1] after each step); activations (α_a, β_a) per tensor.

Network (an MLP, default 64-128-128-10):

    input  pixels p (0..pixel_max) → t0 = T(2p/pixel_max - 1) (fixed, no parameters), x̂0 = α·t0 + β
    hidden y = ŵ·x̂ (ternary weights, no bias) → BatchNorm → x̂ = α·T(·) + β
    output logits = ŵ·x̂ (ternary weights, no bias, no BatchNorm, no re-encode)

Variants (`VARIANTS`): "rtn" (α, β learnable), "scale_only" (β fixed at 0, α learnable:
TWN-like), "frozen" (α, β fixed at their initial values), and "float" (the same MLP in full
precision: float weights, float input 2p/pixel_max - 1, hardtanh in place of T).
Initial values: α_a = 1, β_a = 0, α_w = 1/sqrt(fan-in), β_w = 0, latent weights U(-1, 1).
"""

import dataclasses
import math
import time

import numpy as np
import torch
from torch import nn

DELTA = 0.5


@dataclasses.dataclass(frozen=True)
class Variant:
    quantized: bool
    learn_alpha: bool
    learn_beta: bool


VARIANTS = {
    "float": Variant(False, False, False),
    "rtn": Variant(True, True, True),
    "scale_only": Variant(True, True, False),
    "frozen": Variant(True, False, False),
}

VARIANT_TITLES = {
    "float": "float (full precision)",
    "rtn": "RTN, learnable α and β",
    "scale_only": "scale-only ternary (β = 0, TWN-like)",
    "frozen": "RTN, α and β frozen at init",
}


def ternary_ste(x):
    """T(x) forward; the gradient of clip(x, -1, 1) backward."""
    clipped = x.clamp(-1.0, 1.0)
    t = (clipped > DELTA).to(x.dtype) - (clipped < -DELTA).to(x.dtype)
    return clipped + (t - clipped).detach()


def _inv_softplus(y):
    return math.log(math.expm1(y))


class Reparam(nn.Module):
    """x̂ = α·t + β, α = softplus(ρ); shape () per tensor or (P,) per output channel."""

    def __init__(self, shape, alpha, beta, learn_alpha, learn_beta):
        super().__init__()
        self.rho = nn.Parameter(torch.full(shape, _inv_softplus(alpha)), requires_grad=learn_alpha)
        self.beta = nn.Parameter(torch.full(shape, float(beta)), requires_grad=learn_beta)

    @property
    def alpha(self):
        return nn.functional.softplus(self.rho)

    def forward(self, t):
        return self.alpha * t + self.beta


class ActQuant(nn.Module):
    """Per-tensor activation quantizer α·T(z) + β (hardtanh for the float variant)."""

    def __init__(self, variant):
        super().__init__()
        self.quantized = variant.quantized
        self.q = Reparam((), 1.0, 0.0, variant.learn_alpha, variant.learn_beta)

    def forward(self, z):
        return self.q(ternary_ste(z)) if self.quantized else nn.functional.hardtanh(z)


class TernaryLinear(nn.Module):
    """y = x̂ @ ŵᵀ with ŵ = α_w·T(w) + β_w per output channel (plain float weights if not
    quantized). No bias: BatchNorm follows, and the logits layer's K0 already holds an offset."""

    def __init__(self, n_in, n_out, variant, generator):
        super().__init__()
        self.quantized = variant.quantized
        if variant.quantized:
            self.latent = nn.Parameter(torch.empty(n_out, n_in).uniform_(-1, 1,
                                                                         generator=generator))
        else:
            bound = math.sqrt(3.0 / n_in)
            self.latent = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound,
                                                                         generator=generator))
        self.q = Reparam((n_out,), 1 / math.sqrt(n_in), 0.0, variant.learn_alpha,
                         variant.learn_beta)

    def trits(self):
        return ternary_ste(self.latent)

    def weight(self):
        if not self.quantized:
            return self.latent
        return self.q.alpha[:, None] * self.trits() + self.q.beta[:, None]

    def forward(self, x):
        return x @ self.weight().T

    @torch.no_grad()
    def clamp_(self):
        if self.quantized:
            self.latent.clamp_(-1.0, 1.0)


class RtnMLP(nn.Module):
    def __init__(self, sizes, variant, seed=0):
        super().__init__()
        if len(sizes) < 4:
            raise ValueError(f"An RTN MLP needs at least two hidden layers, not sizes {sizes}")
        generator = torch.Generator().manual_seed(seed)
        self.sizes = tuple(sizes)
        self.variant = variant
        self.input_q = Reparam((), 1.0, 0.0, variant.learn_alpha, variant.learn_beta)
        self.fcs = nn.ModuleList(TernaryLinear(a, b, variant, generator)
                                 for a, b in zip(sizes[:-1], sizes[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(p) for p in sizes[1:-1])
        self.acts = nn.ModuleList(ActQuant(variant) for _ in sizes[1:-1])

    def inputs(self, pixels, pixel_max):
        """Integer pixels (B, features) → the network's input tensor: trits for the ternary
        variants (same integer rule as the golden network), 2p/pixel_max - 1 for float."""
        pixels = torch.as_tensor(np.asarray(pixels, dtype=np.int64))
        if not self.variant.quantized:
            return pixels.float() * (2.0 / pixel_max) - 1.0
        lo, hi = -(-pixel_max // 4), (3 * pixel_max) // 4
        return (pixels > hi).float() - (pixels < lo).float()

    def forward(self, x):
        return self.head(self.input_q(x) if self.variant.quantized else x)

    def head(self, h):
        """The linear layers: BatchNorm and activation after each but the last (the logits)."""
        for i, fc in enumerate(self.fcs):
            y = fc(h)
            if i < len(self.bns):
                h = self.acts[i](self.bns[i](y))
        return y

    def clamp_(self):
        for fc in self.fcs:
            fc.clamp_()


class TernaryConv2d(TernaryLinear):
    """A kh×kw convolution with RTN weights (α_w, β_w per output channel), no bias. Padding is
    in the trit domain [choice, docs/rtn.md §3]: padded positions hold trit 0, which decodes to
    the input activation's β_a, so x̂ is padded with β_a (0 for the float variant)."""

    def __init__(self, c_in, c_out, kernel, padding, variant, generator):
        super().__init__(c_in * kernel * kernel, c_out, variant, generator)
        self.shape = (c_out, c_in, kernel, kernel)
        self.padding = padding

    def kernel_trits(self):
        """t_w as (P, C, kh, kw); `trits()` is the (P, C·kh·kw) matrix the golden model uses."""
        return self.trits().reshape(self.shape)

    def weight(self):
        return super().weight().reshape(self.shape)

    def forward(self, x, beta_a=0.0):
        p = self.padding
        x = nn.functional.pad(x - beta_a, (p, p, p, p)) + beta_a
        return nn.functional.conv2d(x, self.weight())


class RtnCNN(RtnMLP):
    """[conv k×k (padding k // 2) → BatchNorm → x̂ = α·T(·) + β → 2×2 max pool] per entry of
    `channels`, flatten (C, H, W), then the MLP's hidden layers and logits. Pooling follows the
    activation quantizer, so it pools α·t + β, i.e. the trits (α > 0): what the hardware
    does (rtn_hw.model.conv)."""

    def __init__(self, shape, channels, sizes, variant, seed=0, kernel=3):
        nn.Module.__init__(self)
        generator = torch.Generator().manual_seed(seed)
        self.shape = (1,) + tuple(shape) if len(shape) == 2 else tuple(shape)
        self.channels, self.kernel = tuple(channels), kernel
        self.variant = variant
        self.input_q = Reparam((), 1.0, 0.0, variant.learn_alpha, variant.learn_beta)
        c, h, w = self.shape
        convs = []
        for p in self.channels:
            convs.append(TernaryConv2d(c, p, kernel, kernel // 2, variant, generator))
            c, h, w = p, h // 2, w // 2
        self.convs = nn.ModuleList(convs)
        self.conv_bns = nn.ModuleList(nn.BatchNorm2d(p) for p in self.channels)
        self.conv_acts = nn.ModuleList(ActQuant(variant) for _ in self.channels)
        self.sizes = (c * h * w,) + tuple(sizes)
        self.fcs = nn.ModuleList(TernaryLinear(a, b, variant, generator)
                                 for a, b in zip(self.sizes[:-1], self.sizes[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(p) for p in self.sizes[1:-1])
        self.acts = nn.ModuleList(ActQuant(variant) for _ in self.sizes[1:-1])

    def forward(self, x):
        x = x.reshape((len(x),) + self.shape)
        quantizers = [self.input_q] + [act.q for act in self.conv_acts]
        h = self.input_q(x) if self.variant.quantized else x
        for conv, bn, act, q in zip(self.convs, self.conv_bns, self.conv_acts, quantizers):
            beta_a = q.beta if self.variant.quantized else 0.0
            h = nn.functional.max_pool2d(act(bn(conv(h, beta_a))), 2)
        return self.head(h.flatten(1))

    def clamp_(self):
        super().clamp_()
        for conv in self.convs:
            conv.clamp_()


def shifted(x, shape, shift, generator):
    """Inputs (B, H·W) translated per image by (dy, dx) uniform in [-shift, shift], filled with
    -1, the input value of a pixel 0 in every variant (trit -1; 2·0/pixel_max - 1 = -1)."""
    h, w = shape
    padded = nn.functional.pad(x.reshape(-1, h, w), (shift,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * shift + 1, (2, len(x)), generator=generator)
    rows = (offsets[0][:, None] + torch.arange(h))[:, :, None]
    cols = (offsets[1][:, None] + torch.arange(w))[:, None, :]
    return padded[torch.arange(len(x))[:, None, None], rows, cols].reshape(len(x), -1)


@dataclasses.dataclass
class Result:
    model: RtnMLP
    variant: str
    seed: int
    epochs: int
    train_accuracy: float
    test_accuracy: float
    seconds: float
    losses: list


def accuracy(net, x, labels):
    net.eval()
    with torch.no_grad():
        return int((net(x).argmax(dim=1) == labels).sum()) / len(labels)


def train(dataset, variant="rtn", seed=0, epochs=60, hidden=(128, 128), batch=32, lr=1e-2,
          progress=None, channels=None, shift=0):
    """Train one model; deterministic for a given seed (one CPU thread, deterministic
    algorithms). `progress(epoch, epochs, loss)` is called after every epoch. With `channels`
    (a tuple of output channels, one 3×3 convolution + 2×2 max pool each) an `RtnCNN` whose
    fully connected part has `hidden` layers, else an `RtnMLP`. `shift` > 0 augments each
    training batch by random translations of up to ±shift pixels (see `shifted`)."""
    if variant not in VARIANTS:
        raise ValueError(f"Variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    for value, what in ((epochs, "Epoch count"), (batch, "Batch size")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TypeError(f"{what} must be a positive integer, not {value!r}")
    if batch < 2:
        raise ValueError(f"Batch size must be at least 2 (BatchNorm), not {batch}")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    spec = VARIANTS[variant]
    if channels:
        net = RtnCNN(dataset.shape, channels, tuple(hidden) + (dataset.classes,), spec, seed)
    else:
        sizes = (int(np.prod(dataset.shape)),) + tuple(hidden) + (dataset.classes,)
        net = RtnMLP(sizes, spec, seed)
    x_train = net.inputs(dataset.train_images, dataset.pixel_max)
    y_train = torch.as_tensor(dataset.train_labels.astype(np.int64))
    x_test = net.inputs(dataset.test_images, dataset.pixel_max)
    y_test = torch.as_tensor(dataset.test_labels.astype(np.int64))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = -(-len(x_train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs
                                                * steps_per_epoch, pct_start=0.1)
    order = torch.Generator().manual_seed(seed + 1)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x_train), generator=order)
        total = 0.0
        for k in range(0, len(x_train), batch):
            index = perm[k:k + batch]
            if len(index) < 2:  # BatchNorm needs two samples
                continue
            x = x_train[index]
            if shift:
                x = shifted(x, dataset.shape, shift, order)
            loss = loss_fn(net(x), y_train[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            net.clamp_()
            total += float(loss.detach()) * len(index)
        losses.append(total / len(x_train))
        if progress is not None:
            progress(epoch + 1, epochs, losses[-1])
    seconds = time.perf_counter() - start
    return Result(net, variant, seed, epochs, accuracy(net, x_train, y_train),
                  accuracy(net, x_test, y_test), seconds, losses)
