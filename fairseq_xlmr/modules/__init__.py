"""Building blocks shared by the criteria (gradient reversal)."""
