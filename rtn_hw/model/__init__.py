"""The RTN golden model: pure NumPy, bit-exact, and independent of the gateware.

Everything the hardware computes is defined here first; gateware, cocotb benches, synthesis
stimulus and training all check themselves against these functions. Nothing in this package
imports Amaranth.
"""

from .baseline import (CANONICAL_NAN, fp32_dot, fp32_dot_bits, fp32_error_bound, int_dot,
                       int_dot_width)
from .fixed import (Q, RtnConstants, accumulator_width, bits_for, check_output_format, dot_width,
                    decode, encode, error_bound, fold_constants, fold_thresholds, postprocess)
from .layers import conv2d, im2col, linear, linear_fixed, rtn_dot_terms
from .network import InputEncoding, Layer, Network
from .conv import ConvLayer, MaxPool, pad_trits, pool_trits
from .ternary import (activation_sum, int_to_plane, pack, planes_to_int, reparameterize,
                      ternarize, ternary_dot, ternary_matmul, unpack, words_for)

__all__ = [
    "ternarize", "reparameterize", "pack", "unpack", "words_for", "planes_to_int",
    "int_to_plane", "ternary_dot", "activation_sum", "ternary_matmul",
    "Q", "RtnConstants", "fold_constants", "accumulator_width", "check_output_format",
    "postprocess", "error_bound", "fold_thresholds", "encode", "decode", "bits_for", "dot_width",
    "rtn_dot_terms", "linear", "linear_fixed", "conv2d", "im2col",
    "fp32_dot", "fp32_dot_bits", "fp32_error_bound", "int_dot", "int_dot_width", "CANONICAL_NAN",
    "InputEncoding", "Layer", "Network", "ConvLayer", "MaxPool", "pad_trits", "pool_trits",
]
