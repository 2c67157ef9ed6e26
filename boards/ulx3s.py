"""Radiona ULX3S (85F): ECP5-85k, 25 MHz, FTDI UART; LED 0 busy, LED 7 error."""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .top import Board

BOARD = Board(name="ulx3s", platform=ULX3S_85F_Platform, target="ecp5-85k",
              clock_hz=25e6, busy_led=("led", 0), error_led=("led", 7))
