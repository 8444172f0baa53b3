"""MLM + TLM (XLM, Conneau & Lample, 2019) + sequence- and token-level contrastive alignment
(VECO 2.0, Zhang et al., 2023), each weighted by a piecewise-linear schedule λ(update).
"""

import math
from dataclasses import dataclass, field
from typing import Dict

import torch
import torch.nn.functional as F
from fairseq import modules
from fairseq.criterions import register_criterion
from fairseq.data import data_utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics
from torch import nn

from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion, XlmrMlmCriterionConfig
from fairseq_xlmr.modules.contrastive import MemoryQueue, pool_words, symmetric_info_nce, token_info_nce
from fairseq_xlmr.modules.pooling import pool_sequence
from fairseq_xlmr.schedules import PiecewiseLinear

OBJECTIVES = ("mlm", "tlm", "seq", "token")
PARALLEL_OBJECTIVES = ("tlm", "seq", "token")
POOLING_CHOICES = ChoiceEnum(["mean", "cls"])


def _weight_field(default: str, what: str):
    return field(default=default, metadata={"help":
        f"λ of the {what}: a number or a piecewise-linear schedule over updates, e.g. `0:0,10000:1`"})


@dataclass
class XlmrAlignmentCriterionConfig(FairseqDataclass):
    mlm_weight: str = _weight_field("1", "MLM loss on monolingual data")
    tlm_weight: str = _weight_field("0", "TLM loss on concatenated parallel pairs")
    seq_weight: str = _weight_field("0", "sequence-to-sequence contrastive (InfoNCE) loss on parallel pairs")
    token_weight: str = _weight_field("0", "token-to-token contrastive loss on dictionary-aligned words")
    temperature: float = field(default=0.1, metadata={"help": "τ of the sequence-level InfoNCE (logits = cosine / τ)"})
    token_temperature: float = field(default=0.1, metadata={"help": "τ of the token-level InfoNCE"})
    pooling: POOLING_CHOICES = field(default="mean", metadata={"help":
        "sentence vector of the seq objective: mean over non-pad tokens, or the <s> state"})
    source_layer: int = field(default=-1, metadata={"help":
        "layer whose states the contrastive objectives use: 0 = embeddings, k = after layer k, -1 = last"})
    projection_dim: int = field(default=0, metadata={"help":
        "size of an MLP projection head (Linear-GELU-Linear) before the seq InfoNCE; 0: none, the loss acts "
        "on the layer's states directly (what retrieval from that layer measures)"})
    gather_negatives: bool = field(default=True, metadata={"help":
        "in a distributed run, use the pairs of every worker as negatives (all_gather, gradient to local rows)"})
    queue_size: int = field(default=0, metadata={"help":
        "keep the last N sentence vectors of each side as extra negatives (no gradient); 0: no queue"})


@register_criterion("xlmr_alignment", dataclass=XlmrAlignmentCriterionConfig)
class XlmrAlignmentCriterion(XlmrMlmCriterion):
    """Σ_k λ_k(update) · L_k over k ∈ {mlm, tlm, seq, token}, each L_k a mean (per predicted token,
    per pair, per aligned word); sample_size is 1 per worker, so fairseq averages over workers.

    Needs task `xlmr_alignment`. Logs `loss` (the weighted sum, nats), `mlm_loss`/`tlm_loss` and
    `loss_<lang>` (bits per predicted token, as xlmr_mlm), `seq_loss`, `seq_acc` (both directions
    rank the translation first among the batch), `token_loss` (nats), per pair `<objective>_loss_<pair>`,
    and `lambda_<objective>`.
    """

    def __init__(self, cfg: XlmrAlignmentCriterionConfig, task):
        super().__init__(XlmrMlmCriterionConfig(), task)
        for name in ("temperature", "token_temperature"):
            if getattr(cfg, name) <= 0:
                raise ValueError(f"`criterion.{name}` must be > 0, got {getattr(cfg, name)}; VECO/InfoXLM use 0.05-0.1.")
        if cfg.projection_dim < 0 or cfg.queue_size < 0:
            raise ValueError(f"`criterion.projection_dim` and `criterion.queue_size` must be >= 0, got "
                             f"{cfg.projection_dim} and {cfg.queue_size}.")
        self.cfg = cfg
        self.weights = {k: PiecewiseLinear.parse(getattr(cfg, k + "_weight"), f"criterion.{k}_weight") for k in OBJECTIVES}
        self.pairs = list(getattr(task, "pairs", []))
        if any(self._ever_on(k) for k in PARALLEL_OBJECTIVES) and not self.pairs:
            raise ValueError("a parallel objective (criterion.tlm_weight/seq_weight/token_weight) is on but the task "
                             "has no pairs; give `task.para_data` (xlmr binarize --para-dir) or set those weights to 0.")
        dim = getattr(task, "model_dim", None)
        self.projection = None
        if cfg.projection_dim:
            assert dim is not None, "task xlmr_alignment records the model dimension in build_model"
            self.projection = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, cfg.projection_dim))
        if cfg.queue_size:
            queue_dim = cfg.projection_dim or dim
            self.src_queue, self.tgt_queue = MemoryQueue(cfg.queue_size, queue_dim), MemoryQueue(cfg.queue_size, queue_dim)

    def _ever_on(self, objective: str) -> bool:
        return any(v != 0 for v in self.weights[objective].values)

    def needs_parallel(self, num_updates: int) -> bool:
        """Whether this update needs a batch of parallel pairs."""
        return any(self.weights[k](num_updates) != 0 for k in PARALLEL_OBJECTIVES)

    def forward(self, model, sample, reduce=True):
        """sample: {"mlm": MLM batch, "para": pair batch (data/parallel.py)} in training, a plain MLM batch
        in validation (MLM only). The weights follow `model.num_updates`, which fairseq's train_step sets
        before this forward. Returns (weighted loss, 1, logging output)."""
        if "mlm" in sample:
            updates = model.num_updates
        else:
            sample, updates = {"mlm": sample}, None
        weights = {k: (self.weights[k](updates) if updates is not None else float(k == "mlm")) for k in OBJECTIVES}
        losses: Dict[str, torch.Tensor] = {}
        log = {"sample_size": 1, "ntokens": sample["mlm"]["ntokens"], "nsentences": sample["mlm"]["nsentences"]}

        mlm_sum, mlm_size, mlm_log = super().forward(model, sample["mlm"])
        losses["mlm"] = mlm_sum / mlm_size.clamp(min=1)
        log.update(mlm_log, mlm_loss=mlm_log.pop("loss"), mlm_sample_size=mlm_log.pop("sample_size"))
        para = sample.get("para")
        if para is not None:
            if weights["tlm"] != 0:
                losses["tlm"] = self._tlm(model, para, log)
            if weights["seq"] != 0 or weights["token"] != 0:
                self._contrastive(model, para, weights, losses, log)
        loss = sum(weights[k] * value for k, value in losses.items())
        log["loss"] = loss.data
        for k in OBJECTIVES:
            log["lambda_" + k] = weights[k]
        return loss, 1, log

    def _per_pair(self, log, prefix: str, values: torch.Tensor, pair_ids: torch.Tensor):
        """Add per-pair sums `<prefix>_loss_<pair>` and counts `<prefix>_count_<pair>` to the log."""
        n = len(self.pairs)
        sums = values.detach().new_zeros(n).index_add_(0, pair_ids, values.detach())
        counts = pair_ids.new_zeros(n).index_add_(0, pair_ids, torch.ones_like(pair_ids))
        for k, pair in enumerate(self.pairs):
            log[f"{prefix}_loss_{pair}"] = sums[k]
            log[f"{prefix}_count_{pair}"] = counts[k]

    def _tlm(self, model, para, log) -> torch.Tensor:
        """Masked-LM loss on `<s> A </s></s> B </s>`, with per-token language ids and positions."""
        target = para["tlm_target"]  # (batch, seq_len), pad where nothing is predicted
        masked = target.ne(self.padding_idx)
        size = masked.sum()
        masked = torch.where(masked.any(), masked, masked.new([True]))  # see xlmr_mlm: exact 0, no sync
        logits = model(para["tlm_tokens"], masked_tokens=masked, lang_id=para["tlm_lang"],
                       positions=para.get("tlm_positions"))[0]
        token_loss = modules.cross_entropy(logits, target[masked], ignore_index=self.padding_idx, reduction="none")
        log["tlm_loss"], log["tlm_sample_size"] = token_loss.sum().data, size
        pair_of_token = para["pair_id"][:, None].expand_as(target)[masked]
        self._per_pair(log, "tlm", token_loss / math.log(2), pair_of_token)  # bits, like tlm_loss
        return token_loss.sum() / size.clamp(min=1)

    def _contrastive(self, model, para, weights, losses, log):
        """Both sides in one forward pass; the seq InfoNCE on pooled states, the token InfoNCE on words."""
        src, tgt = para["src_tokens"], para["tgt_tokens"]
        n, length = src.size(0), max(src.size(1), tgt.size(1))
        tokens = data_utils.collate_tokens(list(src) + list(tgt), self.padding_idx, pad_to_length=length)
        lang_id = torch.cat([para["src_lang"], para["tgt_lang"]])
        states = self._layer_states(model, tokens, lang_id)  # (2n, length, dim)
        if weights["seq"] != 0:
            vectors = pool_sequence(states, tokens.ne(self.padding_idx), self.cfg.pooling)
            if self.projection is not None:
                vectors = self.projection(vectors)
            queues = (self.src_queue.get(), self.tgt_queue.get()) if self.cfg.queue_size else (None, None)
            pair_loss, correct = symmetric_info_nce(vectors[:n], vectors[n:], self.cfg.temperature,
                                                    self.cfg.gather_negatives, *queues)
            if self.cfg.queue_size:
                self.src_queue.push(vectors[:n])
                self.tgt_queue.push(vectors[n:])
            losses["seq"] = pair_loss.mean()
            log.update(seq_loss=pair_loss.sum().data, seq_correct=correct.sum(), seq_count=n)
            self._per_pair(log, "seq", pair_loss, para["pair_id"])
        if weights["token"] != 0:
            src_word = F.pad(para["src_word"], (0, length - src.size(1)), value=-1)
            tgt_word = F.pad(para["tgt_word"], (0, length - tgt.size(1)), value=-1)
            positives = para["positives"]
            src_words = pool_words(states[:n], src_word, positives.size(1))
            tgt_words = pool_words(states[n:], tgt_word, positives.size(2))
            src_mask = torch.arange(positives.size(1), device=src.device) < (src_word.max(1).values + 1)[:, None]
            tgt_mask = torch.arange(positives.size(2), device=src.device) < (tgt_word.max(1).values + 1)[:, None]
            token_sum, anchors = token_info_nce(src_words, tgt_words, src_mask, tgt_mask, positives,
                                                self.cfg.token_temperature)
            losses["token"] = token_sum / anchors.clamp(min=1)
            log.update(token_loss=token_sum.data, token_count=anchors)

    def _layer_states(self, model, tokens, lang_id) -> torch.Tensor:
        """(batch, seq_len, dim) states of `cfg.source_layer` (0 = embeddings, -1 = last)."""
        last = self.cfg.source_layer == -1
        features, extra = model(tokens, features_only=True, return_all_hiddens=not last, lang_id=lang_id)
        if last:
            return features
        inner = extra["inner_states"]
        if not 0 <= self.cfg.source_layer < len(inner):
            raise ValueError(f"`criterion.source_layer` must be -1 or in [0, {len(inner) - 1}] for this model, "
                             f"got {self.cfg.source_layer}.")
        return inner[self.cfg.source_layer].transpose(0, 1)

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        size = total("sample_size")
        if size:
            metrics.log_scalar("loss", total("loss") / size, size, round=3)
            for k in OBJECTIVES:
                metrics.log_scalar("lambda_" + k, total("lambda_" + k) / size, size, round=3)
        # MLM-type losses in bits per predicted token, as xlmr_mlm logs them.
        for name in ("mlm", "tlm"):
            if total(name + "_sample_size"):
                metrics.log_scalar(name + "_loss", total(name + "_loss") / total(name + "_sample_size") / math.log(2),
                                   total(name + "_sample_size"), round=3)
        # Per-language MLM losses: xlmr_mlm's reduce on the `loss_<lang>` keys only (no total).
        XlmrMlmCriterion.reduce_metrics([{key: value for key, value in log.items()
                                          if key.startswith(("loss_", "sample_size_"))} for log in logging_outputs])
        for name, count in (("seq", "seq_count"), ("token", "token_count")):
            if total(count):
                metrics.log_scalar(name + "_loss", total(name + "_loss") / total(count), total(count), round=3)
        if total("seq_count"):
            metrics.log_scalar("seq_acc", total("seq_correct") / total("seq_count"), total("seq_count"), round=3)
        keys = {key for log in logging_outputs for key in log}
        for key in sorted(k for k in keys if k.startswith(("seq_loss_", "tlm_loss_"))):
            prefix, pair = key.split("_loss_")
            count = total(f"{prefix}_count_{pair}")
            if count:
                metrics.log_scalar(key, total(key) / count, count, round=3)
