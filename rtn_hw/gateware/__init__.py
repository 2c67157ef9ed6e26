"""Amaranth components. The registry of exportable units is `rtn_hw.units`."""
