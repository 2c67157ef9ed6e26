"""rtn-hw: an FPGA hardware generator for RTN (Reparameterized Ternary Network) compute."""

__version__ = "0.1.0"
