"""Board tops for the RTN digits classifier: iCEBreaker (iCE40UP5K) and ULX3S (ECP5-85k).

`python -m boards.build BOARD` (or `make bitstream BOARD=...`) builds a bitstream; see
docs/boards.md. The board-independent logic is `rtn_hw.gateware.link.SerialClassifier`.
"""
