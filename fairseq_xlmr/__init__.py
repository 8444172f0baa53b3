"""fairseq_xlmr: XLM-R (Conneau et al., 2020) pretraining and analysis as a fairseq plugin.

Importing the package is cheap: its components (`fairseq_xlmr.components`) register with fairseq, and its
patches of fairseq apply, as soon as fairseq is imported too, before or after it (`fairseq_xlmr.plugin`).
"""

from fairseq_xlmr.plugin import register, register_when_fairseq_is_loaded

__all__ = ["register"]

register_when_fairseq_is_loaded()
