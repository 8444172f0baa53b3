"""Masked LM plus an adversarial language discriminator behind gradient reversal (Ganin & Lempitsky,
2015; for cross-lingual encoders e.g. Chen et al., 2018 / Keung et al., 2019).

A small classifier predicts each sample's language from its mean-pooled final encoder states. It
learns at full strength, while the encoder receives its gradient reversed and scaled by λ(update):
the encoder is pushed towards states from which the language cannot be told.
"""

import math
from dataclasses import dataclass, field
from typing import Optional

import torch.nn.functional as F
from fairseq.criterions import register_criterion
from fairseq.logging import metrics
from omegaconf import II
from torch import nn

from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion, XlmrMlmCriterionConfig
from fairseq_xlmr.modules.gradient_reversal import reverse_gradient
from fairseq_xlmr.modules.pooling import pool_sequence
from fairseq_xlmr.schedules import PiecewiseLinear


@dataclass
class XlmrAdversarialMlmConfig(XlmrMlmCriterionConfig):
    adversarial_lambda: str = field(default="0:0,1000:1", metadata={"help":
        "λ of the gradient reversal by update: a number or `update:value` points, linear in between "
        "(e.g. `0:0,1000:1`: off at first, while MLM shapes the states, then ramped up)"})
    discriminator_hidden_dim: int = field(default=0, metadata={"help":
        "hidden size of the discriminator's one hidden layer; 0: the encoder's size"})
    encoder_embed_dim: Optional[int] = field(default=II("model.encoder_embed_dim"), metadata={"help":
        "size of the encoder states the discriminator reads (defaults to the model's)"})


@register_criterion("xlmr_adversarial_mlm", dataclass=XlmrAdversarialMlmConfig)
class XlmrAdversarialMlmCriterion(XlmrMlmCriterion):
    """`xlmr_mlm`'s loss + the discriminator's cross-entropy, reversed into the encoder with weight λ.

    Logs `adv_loss` (discriminator cross-entropy, bits per sample), `adv_acc` (its accuracy) and
    `adv_lambda`. The discriminator is a criterion submodule: fairseq's trainer optimises criterion
    parameters with the model's and saves them in the checkpoint's `criterion` entry.
    """

    def __init__(self, cfg: XlmrAdversarialMlmConfig, task):
        super().__init__(cfg, task)
        if len(self.languages) < 2:
            raise ValueError(f"`criterion.xlmr_adversarial_mlm` needs at least 2 languages to tell apart, the task "
                             f"has {self.languages}; use criterion xlmr_mlm for monolingual data.")
        if cfg.encoder_embed_dim is None or cfg.encoder_embed_dim <= 0:
            raise ValueError(f"`criterion.encoder_embed_dim` must be the encoder's hidden size, got "
                             f"{cfg.encoder_embed_dim}; set model.encoder_embed_dim explicitly (or this field).")
        self.schedule = PiecewiseLinear.parse(cfg.adversarial_lambda, "criterion.adversarial_lambda")
        hidden = cfg.discriminator_hidden_dim or cfg.encoder_embed_dim
        self.discriminator = nn.Sequential(
            nn.Linear(cfg.encoder_embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, len(self.languages)))

    def forward(self, model, sample, reduce=True):
        out = self.mlm_forward(model, sample, return_all_hiddens=True)
        states = out.extra["inner_states"][-1]  # (seq_len, batch, dim), the last layer's output
        if states.size(-1) != self.discriminator[0].in_features:
            raise ValueError(f"`criterion.encoder_embed_dim` is {self.discriminator[0].in_features} but the encoder "
                             f"states have size {states.size(-1)}; leave the field at its default (the model's).")
        tokens = sample["net_input"]["src_tokens"]
        pooled = pool_sequence(states.transpose(0, 1), tokens.ne(self.padding_idx), "mean")  # (batch, dim)
        lam = self.schedule(model.num_updates)  # set by fairseq's train_step before this forward
        lang_logits = self.discriminator(reverse_gradient(pooled, lam))  # (batch, languages)
        lang_id = sample["net_input"]["lang_id"]
        adv_sum = F.cross_entropy(lang_logits.float(), lang_id, reduction="sum")
        nsentences = lang_id.numel()
        # The MLM sum is divided by #predicted tokens downstream; scaling the mean cross-entropy by it
        # makes the discriminator's term a per-sample mean, whatever the batch's masking.
        loss = out.loss + adv_sum / nsentences * out.sample_size
        logging_output = dict(out.logging_output, loss=loss.data, adv_loss=adv_sum.data,
                              adv_correct=lang_logits.argmax(-1).eq(lang_id).sum().data,
                              adv_lambda=lam * nsentences)
        return loss, out.sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        XlmrMlmCriterion.reduce_metrics(logging_outputs)
        nsentences = sum(log.get("nsentences", 0) for log in logging_outputs)
        if nsentences == 0:
            return
        adv_loss = sum(log.get("adv_loss", 0) for log in logging_outputs)
        correct = sum(log.get("adv_correct", 0) for log in logging_outputs)
        lam = sum(log.get("adv_lambda", 0) for log in logging_outputs)
        metrics.log_scalar("adv_loss", adv_loss / nsentences / math.log(2), nsentences,
                           round=3)
        metrics.log_scalar("adv_acc", float(correct) / nsentences, nsentences, round=4)
        metrics.log_scalar("adv_lambda", lam / nsentences, nsentences, round=4)
