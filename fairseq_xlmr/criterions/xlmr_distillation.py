"""Knowledge distillation of masked-LM teachers into a multilingual student (Hinton et al., 2015;
multilingual: one teacher, or one monolingual teacher per language as in Tan et al., 2019).

On the positions the task masks, the student matches the teacher's softened distribution:
T² · KL(softmax(z_t / T) || softmax(z_s / T)). Optionally its last hidden states match the
teacher's through a learned projection (student dim -> teacher dim, as TinyBERT), and the usual
hard-label MLM loss can be mixed in.
"""

import math
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from fairseq.criterions import register_criterion
from fairseq.logging import metrics
from omegaconf import II, MISSING
from torch import nn

from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion, XlmrMlmCriterionConfig
from fairseq_xlmr.files import CHECKPOINT_FILE


@dataclass
class XlmrDistillationConfig(XlmrMlmCriterionConfig):
    teachers: str = field(default=MISSING, metadata={"help":
        "teacher model dirs (model.pt inside) or checkpoint files: one path for every language, or "
        "`lang:path` pairs (monolingual teachers), comma-separated; an unprefixed path covers the rest"})
    temperature: float = field(default=2.0, metadata={"help": "softmax temperature T of teacher and student (> 0)"})
    kd_loss_weight: float = field(default=1.0, metadata={"help": "weight of T²·KL(teacher || student)"})
    mlm_loss_weight: float = field(default=0.0, metadata={"help":
        "weight of the hard-label MLM cross-entropy (with `language_loss_weights`) added to the KL"})
    hidden_loss_weight: float = field(default=0.0, metadata={"help":
        "weight of the MSE between the projected student and the teacher last-layer states; 0: off"})
    encoder_embed_dim: Optional[int] = field(default=II("model.encoder_embed_dim"), metadata={"help":
        "the student's hidden size, for the hidden-state projection (defaults to the model's)"})


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Σ_tokens T² · KL(softmax(teacher / T) || softmax(student / T)), in nats.

    Both `(num_tokens, vocab)`; computed in float32. Identical logits give exactly 0.
    """
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="sum") * temperature ** 2


def parse_teachers(text: str, languages: List[str]) -> List[Tuple[Optional[str], str]]:
    """`"en:/t/en,/t/multi"` -> [("en", "/t/en"), (None, "/t/multi")]; every language must get a teacher."""
    entries = []
    for item in (i.strip() for i in str(text).split(",")):
        if not item:
            continue
        lang, sep, path = item.partition(":")
        entries.append((lang, path) if sep and lang in languages else (None, item))
    rule = "one path, or `lang:path` pairs plus at most one unprefixed path for the other languages"
    default = [p for lang, p in entries if lang is None]
    named = [lang for lang, _ in entries if lang is not None]
    if not entries or len(default) > 1 or len(set(named)) != len(named):
        raise ValueError(f"`criterion.teachers` must be {rule}; got {text!r}.")
    missing = [lang for lang in languages if lang not in named]
    if missing and not default:
        raise ValueError(f"`criterion.teachers` gives no teacher for {', '.join(missing)} (task languages: "
                         f"{', '.join(languages)}); add `lang:path` pairs or one unprefixed default path.")
    return entries


def _checkpoint_file(path: str) -> str:
    file = os.path.join(path, CHECKPOINT_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"`criterion.teachers` path {path!r} is neither a model dir with model.pt nor a checkpoint "
                         f"file; give e.g. demo/release or checkpoints/checkpoint_last.pt.")
    return file


@register_criterion("xlmr_distillation", dataclass=XlmrDistillationConfig)
class XlmrDistillationCriterion(XlmrMlmCriterion):
    """Student loss = kd·T²·KL + mlm·CE + hidden·MSE on the `xlmr_mlm` task's masked batches.

    Teachers are frozen (eval mode, no gradient) and kept outside the module tree, so they are
    neither optimised nor saved in the student's checkpoint. The projection is a submodule:
    fairseq's trainer optimises criterion parameters and saves them under `criterion`.
    Logs `kd_loss` (T²·KL, bits per predicted token), `hidden_mse`, and `loss_<lang>` (hard-label
    cross-entropy, so `xlmr eval-mlm` and `xlmr plot-log` read distillation runs too).
    """

    def __init__(self, cfg: XlmrDistillationConfig, task):
        super().__init__(cfg, task)
        if not cfg.temperature > 0:
            raise ValueError(f"`criterion.temperature` must be > 0, got {cfg.temperature}; Hinton et al. use 1-20.")
        for name in ("kd_loss_weight", "mlm_loss_weight", "hidden_loss_weight"):
            if getattr(cfg, name) < 0:
                raise ValueError(f"`criterion.{name}` must be >= 0, got {getattr(cfg, name)}.")
        self.cfg = cfg
        # Deferred import: hub imports the model module, which the plugin registers first.
        from fairseq_xlmr.checkpoint import load_model

        entries = parse_teachers(cfg.teachers, self.languages)
        teachers, index_of = [], {}
        for _, path in entries:
            file = _checkpoint_file(path)
            if file not in index_of:
                index_of[file] = len(teachers)
                teacher = load_model(file, task.source_dictionary)  # checks the vocabulary matches
                teacher.requires_grad_(False)
                teachers.append(teacher.eval())
        default = next((index_of[_checkpoint_file(p)] for lang, p in entries if lang is None), None)
        by_lang = {lang: index_of[_checkpoint_file(p)] for lang, p in entries if lang is not None}
        # A plain list: nn.Module does not register modules inside lists, so the teachers stay out of
        # parameters(), state_dict() and .train()/.to() of the criterion.
        self.teachers = teachers
        self.register_buffer("teacher_of_language", torch.tensor(
            [by_lang.get(lang, default) for lang in self.languages]), persistent=False)
        self.projection = None
        if cfg.hidden_loss_weight > 0:
            if cfg.encoder_embed_dim is None:
                raise ValueError("`criterion.encoder_embed_dim` is unset; set model.encoder_embed_dim explicitly.")
            teacher_dims = {t.args.encoder_embed_dim for t in teachers}
            if len(teacher_dims) != 1:
                raise ValueError(f"`criterion.hidden_loss_weight` needs teachers of one hidden size, got "
                                 f"{sorted(teacher_dims)}; turn the hidden-state loss off for mixed teachers.")
            self.projection = nn.Linear(cfg.encoder_embed_dim, teacher_dims.pop())

    @torch.no_grad()
    def teacher_outputs(self, sample, masked_tokens: torch.Tensor, need_states: bool):
        """Teacher logits `(num_predicted, vocab)` in the student's order, and last states `(seq, batch, dim)`.

        Each sample goes to the teacher of its language; a teacher sees only its samples.
        """
        net_input = sample["net_input"]
        tokens, lang_id = net_input["src_tokens"], net_input["lang_id"]
        owner = self.teacher_of_language.to(lang_id.device)[lang_id]  # (batch,)
        token_owner = owner[:, None].expand_as(masked_tokens)[masked_tokens]  # (num_predicted,)
        logits = states = None
        for t, teacher in enumerate(self.teachers):
            rows = owner.eq(t).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            if next(teacher.parameters()).device != tokens.device:
                teacher.to(tokens.device)
            t_logits, extra = teacher(tokens[rows], masked_tokens=masked_tokens[rows], lang_id=lang_id[rows],
                                      return_all_hiddens=need_states)
            if logits is None:
                logits = t_logits.new_zeros(token_owner.numel(), t_logits.size(-1))
            # Row-major order of the masked positions is kept inside a row subset.
            logits[token_owner.eq(t)] = t_logits
            if need_states:
                t_states = extra["inner_states"][-1]
                if states is None:
                    states = t_states.new_zeros(t_states.size(0), tokens.size(0), t_states.size(-1))
                states[:, rows] = t_states
        return logits, states

    def forward(self, model, sample, reduce=True):
        need_states = self.projection is not None
        out = self.mlm_forward(model, sample, return_all_hiddens=need_states)
        teacher_logits, teacher_states = self.teacher_outputs(sample, out.masked_tokens, need_states)
        predicted = sample["target"][out.masked_tokens].ne(self.padding_idx)  # (num_predicted,): not a fallback row
        kd = kd_loss(out.logits[predicted], teacher_logits[predicted], self.cfg.temperature)
        loss = self.cfg.kd_loss_weight * kd + self.cfg.mlm_loss_weight * out.loss
        logging_output = dict(out.logging_output, kd_loss=kd.data)
        if need_states:
            student = self.projection(out.extra["inner_states"][-1])  # (seq_len, batch, teacher dim)
            keep = sample["net_input"]["src_tokens"].ne(self.padding_idx).t()  # (seq_len, batch)
            mse = F.mse_loss(student[keep].float(), teacher_states[keep].float())  # mean over tokens and dims
            # Scaled by #predicted so that, after fairseq divides by it, the term is the mean MSE.
            loss = loss + self.cfg.hidden_loss_weight * mse * out.sample_size
            logging_output["hidden_mse"] = mse.data * out.sample_size
        logging_output["loss"] = loss.data
        return loss, out.sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        XlmrMlmCriterion.reduce_metrics(logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        if sample_size == 0:
            return
        for key in ("kd_loss", "hidden_mse"):
            if any(key in log for log in logging_outputs):
                total = sum(log.get(key, 0) for log in logging_outputs)
                scale = math.log(2) if key == "kd_loss" else 1.0  # the KL in bits, like the losses
                metrics.log_scalar(key, total / sample_size / scale, sample_size, round=4)
