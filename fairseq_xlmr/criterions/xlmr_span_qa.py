"""Span-extraction loss for extractive QA (BERT/XLM-R SQuAD fine-tuning): mean of start and end cross-entropy."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from fairseq_xlmr.tasks.xlmr_span_qa import QA_HEAD


@dataclass
class XlmrSpanQaCriterionConfig(FairseqDataclass):
    """No options: windows, targets and decoding are the task's."""


@register_criterion("xlmr_span_qa", dataclass=XlmrSpanQaCriterionConfig)
class XlmrSpanQaCriterion(FairseqCriterion):
    """(CE(start) + CE(end)) / 2 per window, summed over the batch; sample_size = windows.

    Windows without the answer have target 0 (`<s>`) for both, as in BERT / HF run_qa.
    """

    def span_logits(self, model, sample) -> torch.Tensor:
        """`(batch, seq_len, 2)` float start/end logits; -inf at padding so it never gets probability."""
        logits, _ = model(**sample["net_input"], token_head_name=QA_HEAD)
        padding = sample["net_input"]["src_tokens"].eq(self.padding_idx)
        return logits.float().masked_fill(padding[:, :, None], float("-inf"))

    def span_loss(self, logits: torch.Tensor, sample):
        """logits `(batch, seq_len, 2)`; sample["target"] `(batch, 2)` start/end positions."""
        target = sample["target"]
        start_loss = F.cross_entropy(logits[:, :, 0], target[:, 0], reduction="sum")
        end_loss = F.cross_entropy(logits[:, :, 1], target[:, 1], reduction="sum")
        loss = (start_loss + end_loss) / 2
        sample_size = target.size(0)
        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    def forward(self, model, sample, reduce=True):
        return self.span_loss(self.span_logits(model, sample), sample)

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """`loss`: mean per-window loss in bits (base 2, as fairseq's other criterions)."""
        loss = sum(float(log.get("loss", 0)) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss / max(sample_size, 1) / math.log(2), sample_size, round=3)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        # Validation logging outputs carry the decoded answers (a list), which cannot be summed.
        return False
