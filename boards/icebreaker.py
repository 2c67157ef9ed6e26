"""1BitSquared iCEBreaker: iCE40UP5K, 12 MHz, FTDI UART; green LED busy, red LED error."""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from .top import Board

BOARD = Board(name="icebreaker", platform=ICEBreakerPlatform, target="ice40-up5k",
              clock_hz=12e6, busy_led=("led_g", 0), error_led=("led_r", 0))
