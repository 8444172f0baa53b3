"""Piecewise-linear schedules of a loss weight λ over training updates (`"0:0,10000:1"`).

Shared by the multi-objective alignment task and the adversarial language discriminator
(model fusion): a weight that is off at first and ramps up once MLM has shaped the representations.
"""

import bisect
from typing import List, Tuple


class PiecewiseLinear:
    """λ(update) interpolated linearly between `update:value` points, constant outside them.

    `PiecewiseLinear.parse("0:0,10000:1")(5000) == 0.5`; a bare number (`"0.3"`) is a constant.
    """

    def __init__(self, points: List[Tuple[int, float]]):
        self.steps = [step for step, _ in points]
        self.values = [value for _, value in points]

    @classmethod
    def parse(cls, text: str, field: str = "schedule") -> "PiecewiseLinear":
        text = str(text).strip()
        rule = "a number, or comma-separated `update:value` points with increasing updates, e.g. `0:0,10000:1`"
        try:
            if ":" not in text:
                return cls([(0, float(text))])
            points = []
            for item in text.split(","):
                step, value = item.split(":")
                points.append((int(step), float(value)))
        except ValueError:
            raise ValueError(f"`{field}` must be {rule}; got {text!r}.") from None
        steps = [step for step, _ in points]
        if steps[0] < 0 or any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"`{field}` must be {rule}; got {text!r} (updates must be >= 0 and increasing).")
        return cls(points)

    def __call__(self, num_updates: int) -> float:
        i = bisect.bisect_right(self.steps, num_updates)
        if i == 0:
            return self.values[0]
        if i == len(self.steps):
            return self.values[-1]
        (s0, v0), (s1, v1) = (self.steps[i - 1], self.values[i - 1]), (self.steps[i], self.values[i])
        return v0 + (v1 - v0) * (num_updates - s0) / (s1 - s0)

    def __repr__(self) -> str:
        return "PiecewiseLinear(" + ",".join(f"{s}:{v:g}" for s, v in zip(self.steps, self.values)) + ")"
