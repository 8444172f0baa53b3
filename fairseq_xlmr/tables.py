"""Markdown tables and mean ± std, as every report of the package prints them."""

import math
from typing import Dict, List, Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: bool = False) -> List[str]:
    """The lines of a Markdown table; `numeric` right-aligns every column after the first."""
    rule = "|---|" + ("---:|" if numeric else "---|") * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(row) + " |" for row in rows]


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """{"mean", "std" (sample, n - 1; 0 for one value), "n"}."""
    n = len(values)
    if not n:
        raise ValueError("no values to aggregate")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "n": n}
