"""What every XTREME-style fine-tuning task shares (Conneau et al., 2020, §5; Hu et al., 2020): raw files read per
language and tokenised with the pretrained model's SentencePiece model and dictionary, a head on the pretrained
encoder, the lower layers optionally frozen, and the checks that must fail before training starts.

Not a registered task: classification.py builds on it for `xlmr_sentence_classification` and
`xlmr_token_classification` (labels), tasks/xlmr_span_qa.py for `xlmr_span_qa` (answer spans).

Tokenisation: fine-tuning sets are small (XNLI: 393k pairs), so the tasks read raw text and encode it with
SentencePiece when a split is loaded, instead of a separate binarisation step. The SentencePiece model and dict.txt
are those of the pretrained model: by default the ones beside the pretrained checkpoint (`--finetune-from-model`, or
`--restore-file`), as an XLM-R release or `make demo` output holds them; `--spm-model` names another SentencePiece
model, with its dict.txt beside it.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import sentencepiece as spm
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask
from omegaconf import II, MISSING

from fairseq_xlmr.checkpoint import load_dictionary
from fairseq_xlmr.files import DICT_FILE, SPM_FILE
from fairseq_xlmr.preprocess.binarize import build_id_table
from fairseq_xlmr.preprocess.spm import check_spm_matches_dict
from fairseq_xlmr.task_checks import (
    check_fits_model,
    check_matches_pretrained,
    pretrained_checkpoint,
    resolve_vocab_files,
)

logger = logging.getLogger(__name__)


@dataclass
class XlmrFinetuneConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help":
        "directory of the raw fine-tuning files; the split patterns below are relative to it"})
    train_file: str = field(default="{lang}/train.tsv", metadata={"help":
        "training file pattern: `{lang}` stands for the language (one file per language); without it, "
        "one file holds every language in a language column; comma-separated alternatives are tried in "
        "order (PAWS-X: '{lang}/train.tsv,{lang}/translated_train.tsv')"})
    valid_file: str = field(default="{lang}/dev.tsv", metadata={"help":
        "dev file pattern (as --train-file); the dev set selects the checkpoint"})
    test_file: str = field(default="{lang}/test.tsv", metadata={"help":
        "test file pattern (as --train-file); empty: no test split"})
    eval_languages: str = field(default="all", metadata={"help":
        "comma-separated languages of the dev and test splits, or 'all' (every language of the dev files)"})
    max_length: int = field(default=128, metadata={"help":
        "max tokens per input including <s> and </s> (XTREME: 128); at most the model's max_positions"})
    spm_model: str = field(default="", metadata={"help":
        f"SentencePiece model; its {DICT_FILE} must lie beside it. Empty: the {SPM_FILE} beside "
        "--finetune-from-model (or --restore-file), the pretrained checkpoint"})
    freeze_embeddings: bool = field(default=False, metadata={"help":
        "keep the token and position embeddings fixed while fine-tuning: training on one language then cannot "
        "move its pieces away from those of the languages tested zero-shot"})
    freeze_layers: int = field(default=0, metadata={"help":
        "also keep the embeddings and the first N Transformer layers fixed, and run them without dropout (Wu & "
        "Dredze, 2019 froze mBERT's lower layers for zero-shot transfer); N = the number of layers freezes the whole "
        "encoder, so only the head learns, on frozen features (a probe)"})
    frozen_cache_gb: float = field(default=2.0, metadata={"help":
        "with --freeze-layers: memory (GiB) for each sentence's states after the frozen layers, kept so that later "
        "epochs and validations run only the layers above; 0 turns the cache off"})
    # Shared with the rest of the run (no help: fairseq sets them from the checkpoint options).
    seed: int = II("common.seed")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")
    restore_file: str = II("checkpoint.restore_file")
    best_checkpoint_metric: str = II("checkpoint.best_checkpoint_metric")
    maximize_best_checkpoint_metric: bool = II("checkpoint.maximize_best_checkpoint_metric")



class XlmrFinetuneTask(FairseqTask):
    """Base of the fine-tuning tasks: the pretrained vocabulary, the model checks, the head and the freezing.

    Subclasses define `setup_task`, `load_dataset` and `add_head(model)`, and may name their metric
    (`metric_name`) for the checkpoint-selection check.
    """

    cfg: XlmrFinetuneConfig

    def __init__(self, cfg: XlmrFinetuneConfig, dictionary, sp):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.sp = sp
        self.id_table = build_id_table(sp, dictionary)

    @classmethod
    def load_vocabulary(cls, cfg: XlmrFinetuneConfig):
        """(dictionary with `<mask>`, SentencePiece processor) of the pretrained model, checked to belong together."""
        dict_path, spm_path = resolve_vocab_files(cfg)
        check_spm_matches_dict(spm_path, dict_path)
        dictionary = load_dictionary(dict_path)  # + <mask>, as in pretraining, so embedding rows match
        logger.info("dictionary: %d types from %s", len(dictionary), dict_path)
        return dictionary, spm.SentencePieceProcessor(model_file=spm_path)

    @classmethod
    def check_config(cls, cfg: XlmrFinetuneConfig):
        """Refuse a checkpoint metric this task does not log, or one kept as best when it is the worst."""
        metric, best = cls.metric_name(cfg), cfg.best_checkpoint_metric
        if best == "loss":
            logger.warning("checkpoints are selected on dev loss; XLM-R selected on the average dev %s: pass "
                           "--best-checkpoint-metric %s --maximize-best-checkpoint-metric", metric, metric)
        elif not any(best == name or best.startswith(name + "_") for name in cls.logged_metrics(cfg)):
            raise ValueError(f"`checkpoint.best_checkpoint_metric` is {best!r}, which this task does not log; use "
                             f"'{metric}' (the all-language average), '{metric}_<lang>' or 'loss'.")
        elif not cfg.maximize_best_checkpoint_metric:
            raise ValueError(f"`checkpoint.best_checkpoint_metric` {best!r} is higher-is-better but "
                             "`checkpoint.maximize_best_checkpoint_metric` is off: the worst checkpoint would be "
                             "kept. Add --maximize-best-checkpoint-metric.")

    @classmethod
    def metric_name(cls, cfg) -> str:
        """The metric logged per language and averaged (`accuracy`, `f1`), in percent."""
        return "accuracy"

    @classmethod
    def logged_metrics(cls, cfg) -> List[str]:
        """Every higher-is-better metric the task logs (with `_<lang>` variants): what may select checkpoints."""
        return [cls.metric_name(cfg)]

    # ------------------------------------------------------------------ fairseq API

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        check_fits_model(model, self.cfg.max_length, "max_length", "lower --max-length.")
        pretrained = pretrained_checkpoint(self.cfg)
        if not from_checkpoint and pretrained and os.path.isfile(pretrained):
            check_matches_pretrained(model.args, pretrained)
        self.add_head(model)
        # Fine-tuning never runs the LM head: no gradient, no optimizer state (its tied weight is the embeddings').
        for name, parameter in model.encoder.lm_head.named_parameters():
            if name != "weight":
                parameter.requires_grad_(False)
        self.freeze(model.encoder.sentence_encoder)
        return model

    def freeze(self, encoder) -> None:
        """--freeze-embeddings / --freeze-layers (frozen layers run without dropout, their states cached per
        sentence); fairseq's trainer optimises only parameters that require a gradient."""
        layers, frozen = len(encoder.layers), self.cfg.freeze_layers
        if not 0 <= frozen <= layers:
            raise ValueError(f"`--freeze-layers` must be in [0, {layers}] (the model's encoder layers), got {frozen}; "
                             f"{layers} freezes the whole encoder.")
        if self.cfg.frozen_cache_gb < 0:
            raise ValueError(f"`--frozen-cache-gb` must be >= 0, got {self.cfg.frozen_cache_gb}; 0 turns the cache off.")
        encoder.freeze(self.cfg.freeze_embeddings, frozen, int(self.cfg.frozen_cache_gb * 2**30))

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, **kwargs):
        if dataset is not self.datasets.get("train"):
            # fairseq's batch_by_size (0.12.3's compiled helper) drops the last examples when their
            # number is below --required-batch-size-multiple (default 8): 100 dev sentences with
            # --batch-size 16 were scored as 96. Every dev/test example must count.
            required_batch_size_multiple = 1
        return super().get_batch_iterator(dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                                          required_batch_size_multiple, **kwargs)

    def max_positions(self):
        return self.cfg.max_length

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    # ------------------------------------------------------------------ tokenisation

    def encode_texts(self, texts: List[str]) -> List[np.ndarray]:
        """SentencePiece pieces of each text as fairseq ids (no specials), in one C++ call."""
        return [self.id_table[np.asarray(ids, dtype=np.int64)] for ids in self.sp.encode(list(texts))]

    # ------------------------------------------------------------------ subclass hooks

    def add_head(self, model):
        raise NotImplementedError
