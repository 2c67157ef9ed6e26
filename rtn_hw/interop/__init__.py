"""Interoperability with other tools' model formats (the optional `onnx` extra).

- `qonnx_export`: an rtn-hw network (weights/NAME.json) → a QONNX graph (`rtn-hw export-qonnx`).
- `qonnx_import`: a QONNX graph (Brevitas, FINN, hls4ml, our own export; an MLP or a CNN) →
  the weights format (`rtn-hw import`), with scales, zero points and BatchNorm folded by the
  golden model's rules.
- `qonnx_check`: the golden integer network against qonnx's `execute_onnx` on test images
  (class agreement, logit error against the fixed-point bound; build/reports/import.json).
- CNNs: convolutions pad with trit 0 (β_a), ONNX's Conv with real zeros; the exporter writes
  an explicit Pad of trit 0's value and the importer refuses zero padding where β_a ≠ 0.

See docs/qonnx.md. Layering: these modules sit beside `rtn_hw.weights` (they use
`rtn_hw.model` and `rtn_hw.weights`, never the gateware), and raise `QonnxError`, a one-line
ValueError the CLI prints as a usage error.
"""


class QonnxError(ValueError):
    """A QONNX model that cannot be read, exported or imported; the message is one line."""
