"""RTN quantization-aware training and export (optional: needs the `train` extra, i.e. torch
and scikit-learn). `python -m rtn_hw.train` reproduces the shipped weights/;
`python -m rtn_hw.train --compare` prints the accuracy table of the four variants.

Modules: `data` (digits / MNIST IDX loading, NumPy only), `qat` (torch quantizers, model,
training loop), `export` (fixed-point formats, weights format). See docs/training.md.
"""
