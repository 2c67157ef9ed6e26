"""In-order scoreboard: every output against the golden model's, with readable mismatches.

Outputs are compared as flat payload ints (one integer comparison per vector); only a mismatch
is unpacked into fields and printed, with the vector index, the inputs (trit notation for
ternary operands), the expected and actual values and the seed to replay it. After `limit`
mismatches the scoreboard declares itself finished, so a broken design fails fast.

The final `verdict` also checks that nothing was lost (fewer outputs than inputs), duplicated
or added (more outputs), and names a mismatch that equals another vector's expected output,
the signature of reordering or duplication.
"""

from cocotb.triggers import Event

__all__ = ["Scoreboard"]


class Scoreboard:
    """Checks output k against `expected[k]`.

    `describe(k)` renders vector k's inputs, `show(value)` renders an output payload int;
    `label` names the run (unit, parameters, simulator) and `seed` replays it."""

    def __init__(self, expected, *, describe, show, seed, label, limit=10):
        self.expected = expected
        self.describe = describe
        self.show = show
        self.seed = seed
        self.label = label
        self.limit = limit
        self.received = 0
        self.mismatches = []
        self.extra = []
        self.finished = Event()
        if not expected:
            self.finished.set()

    def check(self, index, value):
        self.received = index + 1
        if index >= len(self.expected):
            self.extra.append(index)
            self.finished.set()
            return
        want = self.expected[index]
        if value != want:
            self.mismatches.append(self._message(index, want, value))
            if len(self.mismatches) >= self.limit:
                self.finished.set()
        if self.received == len(self.expected):
            self.finished.set()

    def _message(self, index, want, got):
        shown = self.show(got) if isinstance(got, int) else f"non-binary {got}"
        lines = [f"vector {index} (seed {self.seed}, replay with SEED={self.seed}):",
                 f"  inputs:   {self.describe(index)}",
                 f"  expected: {self.show(want)}",
                 f"  actual:   {shown}"]
        # The nearest vector whose expected output this is: a shifted stream shows as +-1.
        others = [k for k, v in enumerate(self.expected) if v == got and k != index]
        if others:
            near = min(others, key=lambda k: (abs(k - index), k))
            lines.append(f"  (the actual value is vector {near}'s expected output: "
                         f"reordered, lost or duplicated?)")
        return "\n".join(lines)

    @property
    def failed(self):
        return bool(self.mismatches or self.extra or self.received < len(self.expected))

    def verdict(self):
        """One text naming every failure, or "" when all outputs arrived and matched."""
        problems = []
        if self.mismatches:
            more = " (stopped at the limit)" if len(self.mismatches) >= self.limit else ""
            problems.append(f"{len(self.mismatches)} mismatches{more}:")
            problems.extend(self.mismatches)
        if len(self.mismatches) >= self.limit:
            problems.append(f"stopped after {self.received} of {len(self.expected)} outputs")
        elif self.received < len(self.expected):
            problems.append(f"lost: only {self.received} of {len(self.expected)} outputs "
                            f"arrived")
        if self.extra:
            problems.append(f"duplicated or spurious: {len(self.extra)} outputs beyond the "
                            f"{len(self.expected)} inputs sent (first at index "
                            f"{self.extra[0]})")
        if not problems:
            return ""
        return f"{self.label}: " + "\n".join(problems)
