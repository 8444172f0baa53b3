"""Masked-LM cross-entropy with a per-language breakdown, for XLM-R (Conneau et al., 2020)."""

import math
from dataclasses import dataclass

import torch
from fairseq import modules, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics


@dataclass
class XlmrMlmCriterionConfig(FairseqDataclass):
    """No options: the masking settings live in the task."""


@register_criterion("xlmr_mlm", dataclass=XlmrMlmCriterionConfig)
class XlmrMlmCriterion(FairseqCriterion):
    """Cross-entropy over the masked positions only, summed; logs `loss_<lang>` for every language.

    Needs a task with `languages` whose batches carry `net_input.lang_id` (task `xlmr_mlm`).
    """

    def __init__(self, cfg: XlmrMlmCriterionConfig, task):
        super().__init__(task)
        self.languages = list(task.languages)

    def forward(self, model, sample, reduce=True):
        """Loss of one batch.

        sample["target"]: (batch, seq_len), the original id at predicted positions and pad elsewhere.
        sample["net_input"]["lang_id"]: (batch,), positions in `task.languages`.
        Returns (loss summed over predicted tokens, number of predicted tokens, logging output).
        """
        masked_tokens = sample["target"].ne(self.padding_idx)  # (batch, seq_len)
        sample_size = masked_tokens.int().sum()
        # A batch without any predicted token (rare, on tiny data) projects every position instead:
        # the loss is then an exact 0 (all targets are pad) that still reaches every parameter.
        # torch.where avoids a device-to-host sync on GPU.
        masked_tokens = torch.where(masked_tokens.any(), masked_tokens, masked_tokens.new([True]))

        # The LM head runs on the predicted positions only: (num_predicted, vocab).
        logits = model(**sample["net_input"], masked_tokens=masked_tokens)[0]
        targets = model.get_targets(sample, [logits])[masked_tokens]  # (num_predicted,)
        token_loss = modules.cross_entropy(
            logits.view(-1, logits.size(-1)),
            targets.view(-1),
            ignore_index=self.padding_idx,
            reduction="none",
        )
        loss = token_loss.sum()

        # Every worker logs every language, so summed logging outputs line up across workers.
        token_lang = sample["net_input"]["lang_id"][:, None].expand_as(masked_tokens)[masked_tokens]
        num_languages = len(self.languages)
        lang_loss = token_loss.new_zeros(num_languages).index_add_(0, token_lang, token_loss.detach())
        lang_size = token_lang.new_zeros(num_languages).index_add_(0, token_lang, targets.ne(self.padding_idx).long())

        logging_output = {
            "loss": loss.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        for i, lang in enumerate(self.languages):
            logging_output["loss_" + lang] = lang_loss[i]
            logging_output["sample_size_" + lang] = lang_size[i]
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        """Log `loss`/`ppl` and, for every `loss_<lang>` key, `loss_<lang>`/`ppl_<lang>` (base 2)."""

        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        _log_loss("", total("loss"), total("sample_size"))
        languages = sorted({key[len("loss_"):] for log in logging_outputs for key in log if key.startswith("loss_")})
        for lang in languages:
            _log_loss("_" + lang, total("loss_" + lang), total("sample_size_" + lang))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True  # every value is a sum


def _log_loss(suffix: str, loss_sum, sample_size):
    """Log `loss<suffix>` in bits per predicted token and the derived `ppl<suffix>`."""
    if sample_size == 0:
        return  # nothing predicted (e.g. a language absent from these batches): no loss to report
    metrics.log_scalar("loss" + suffix, loss_sum / sample_size / math.log(2), sample_size, round=3)
    metrics.log_derived("ppl" + suffix, lambda meters: utils.get_perplexity(meters["loss" + suffix].avg))
