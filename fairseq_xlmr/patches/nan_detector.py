"""Replaces `fairseq.trainer.NanDetector` (checked on ve-fairseq 0.12.3): the diagnosis of NaN/Inf gradients can no
longer hide the error it diagnoses.

On NaN/Inf gradients fairseq re-runs the batch under its NanDetector. Its old-style backward hooks crash
(StopIteration) on modules that return a dict without tensors, as fairseq's Transformer encoders do, and that
crash replaced the `FloatingPointError` being diagnosed: ours hooks the forward pass only and, if its own pass
fails anyway, logs that and lets the original error through (patches/training_loop.py then names the fix).
"""

import logging

from fairseq import trainer
from fairseq.nan_detector import NanDetector

from fairseq_xlmr.patches.wrapping import replace

logger = logging.getLogger(__name__)


class ForwardNanDetector(NanDetector):
    """fairseq's NanDetector on the forward pass only, whose own failure cannot hide the error it diagnoses."""

    def __init__(self, model, forward=True, backward=True):
        super().__init__(model, forward=forward, backward=False)

    def __exit__(self, exc_type, exc_value, exc_traceback):
        super().__exit__(exc_type, exc_value, exc_traceback)
        if exc_type is not None and issubclass(exc_type, Exception):
            logger.warning("the NaN detector's diagnostic pass failed (%s: %s); the original error follows",
                           exc_type.__name__, exc_value)
            return True  # fairseq's `raise` after it re-raises the FloatingPointError being handled
        return False


def apply() -> None:
    replace(trainer, "NanDetector", lambda _: ForwardNanDetector)
