"""Masked-LM cross-entropy with a per-language breakdown, for XLM-R (Conneau et al., 2020)."""

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple

import torch
from fairseq import modules, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

logger = logging.getLogger(__name__)


@dataclass
class XlmrMlmCriterionConfig(FairseqDataclass):
    """The masking settings live in the task; the criterion only weighs languages."""

    language_loss_weights: str = field(default="", metadata={"help":
        "per-language loss weights λ_k as `lang:weight` pairs, e.g. `en:1,sw:2`; unlisted languages weigh 1. "
        "Scales each predicted token's loss by its sample's language; the logged loss_<lang> stay unweighted"})


class MlmOutput(NamedTuple):
    """What one MLM forward computed, for criteria that add terms to it."""

    loss: torch.Tensor  # () weighted sum over predicted tokens
    sample_size: torch.Tensor  # () number of predicted tokens
    logging_output: Dict[str, Any]
    logits: torch.Tensor  # (num_predicted, vocab)
    masked_tokens: torch.Tensor  # (batch, seq_len) bool, the positions `logits` belong to
    extra: Dict[str, Any]  # the model's second output ({"inner_states": ...})


def parse_language_weights(text: str, languages: List[str], field_name: str = "criterion.language_loss_weights"):
    """`"en:1,de:2"` -> [w_lang for lang in languages] (1.0 where unlisted), or None for "" (no weighting)."""
    text = (text or "").strip()
    if not text:
        return None
    weights = {}
    for item in text.split(","):
        lang, sep, value = item.strip().partition(":")
        try:
            weight = float(value) if sep else None
        except ValueError:
            weight = None
        if weight is None or weight < 0 or not math.isfinite(weight):
            raise ValueError(f"`{field_name}` must be comma-separated `lang:weight` pairs with weights >= 0, got "
                             f"{item.strip()!r} in {text!r}; e.g. `en:1,sw:2`.")
        if lang not in languages:
            raise ValueError(f"`{field_name}` names language {lang!r}, which is not one of the task's languages "
                             f"({', '.join(languages)}); fix the name or add it to `task.languages`.")
        if lang in weights:
            raise ValueError(f"`{field_name}` gives language {lang!r} twice in {text!r}.")
        weights[lang] = weight
    return [weights.get(lang, 1.0) for lang in languages]


@register_criterion("xlmr_mlm", dataclass=XlmrMlmCriterionConfig)
class XlmrMlmCriterion(FairseqCriterion):
    """Cross-entropy over the masked positions only, summed; logs `loss_<lang>` for every language.

    With `language_loss_weights`, token losses are scaled by λ_k of their language: the optimised
    `loss` is Σ λ_k ℓ / #predicted, while `loss_<lang>` stay the plain per-language losses.

    Needs a task with `languages` whose batches carry `net_input.lang_id` (task `xlmr_mlm`).
    """

    def __init__(self, cfg: XlmrMlmCriterionConfig, task):
        super().__init__(task)
        self.languages = list(task.languages)
        weights = parse_language_weights(cfg.language_loss_weights, self.languages)
        # Not persistent: the weights are this run's setting, not state to carry into another run.
        self.register_buffer("language_weights", None if weights is None else torch.tensor(weights),
                             persistent=False)

    def forward(self, model, sample, reduce=True):
        """Loss of one batch.

        sample["target"]: (batch, seq_len), the original id at predicted positions and pad elsewhere.
        sample["net_input"]["lang_id"]: (batch,), positions in `task.languages`.
        Returns (loss summed over predicted tokens, number of predicted tokens, logging output).
        """
        out = self.mlm_forward(model, sample)
        return out.loss, out.sample_size, out.logging_output

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Criteria with parameters (discriminator, projection): fairseq loads the checkpoint's `criterion`
        entry whenever the criterion has parameters, also with --finetune-from-model from a plain MLM
        checkpoint, whose entry is None. Such a start keeps the fresh parameters instead of failing."""
        own = set(self.state_dict())
        if not state_dict or not own & set(state_dict):
            if own:
                logger.info("the checkpoint has no parameters for criterion %s (%s): starting them fresh",
                            type(self).__name__, ", ".join(sorted(own)))
            return super().load_state_dict({}, strict=False)  # loads nothing
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def mlm_forward(self, model, sample, return_all_hiddens: bool = False) -> MlmOutput:
        """The MLM part of a batch's loss, with the logits and model outputs other criteria build on."""
        masked_tokens = sample["target"].ne(self.padding_idx)  # (batch, seq_len)
        sample_size = masked_tokens.int().sum()
        # A batch without any predicted token (rare, on tiny data) projects every position instead:
        # the loss is then an exact 0 (all targets are pad) that still reaches every parameter.
        # torch.where avoids a device-to-host sync on GPU.
        masked_tokens = torch.where(masked_tokens.any(), masked_tokens, masked_tokens.new([True]))

        # The LM head runs on the predicted positions only: (num_predicted, vocab).
        logits, extra = model(**sample["net_input"], masked_tokens=masked_tokens, return_all_hiddens=return_all_hiddens)
        targets = model.get_targets(sample, [logits])[masked_tokens]  # (num_predicted,)
        token_loss = modules.cross_entropy(
            logits.view(-1, logits.size(-1)),
            targets.view(-1),
            ignore_index=self.padding_idx,
            reduction="none",
        )
        # Every worker logs every language, so summed logging outputs line up across workers.
        token_lang = sample["net_input"]["lang_id"][:, None].expand_as(masked_tokens)[masked_tokens]
        if self.language_weights is None:
            loss = token_loss.sum()
        else:
            loss = (token_loss * self.language_weights.to(token_loss.dtype)[token_lang]).sum()
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
        return MlmOutput(loss, sample_size, logging_output, logits, masked_tokens, extra)

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
        # Nothing predicted (e.g. a language absent from these batches): no loss to report.
        _drop_empty_loss_meters(suffix)
        return
    metrics.log_scalar("loss" + suffix, loss_sum / sample_size / math.log(2), sample_size, round=3)
    metrics.log_derived("ppl" + suffix, lambda meters: _perplexity(meters["loss" + suffix]))


def _perplexity(loss_meter):
    """2**loss of an average meter, or None while it holds no value (fairseq's get_perplexity says 0 then)."""
    return None if loss_meter.avg is None else utils.get_perplexity(loss_meter.avg)


def _drop_empty_loss_meters(suffix: str) -> None:
    """Remove `loss<suffix>`/`ppl<suffix>` from every active aggregator where they hold no value.

    fairseq resets a log interval's meters (`metrics.reset_meters("train_inner")`) but keeps them, so a
    language seen in an earlier interval and absent from this one would log `loss_<lang>: null` beside
    `ppl_<lang>: 0` (get_perplexity(None) is 0). An aggregator whose loss meter has not been updated since
    its reset therefore forgets both; the next interval with that language adds them again.
    """
    keys = ("loss" + suffix, "ppl" + suffix)
    for agg in metrics.get_active_aggregators():
        meter = agg.get(keys[0])
        if meter is None or getattr(meter, "count", 1) > 0:
            continue
        for key in keys:
            agg.pop(key, None)
        # MetersDict keeps its key order in `priorities` too (its state_dict reads it).
        agg.priorities[:] = [entry for entry in agg.priorities if entry[2] not in keys]
