"""What the XTREME-style fine-tuning tasks share (Conneau et al., 2020, §5; Hu et al., 2020): raw files
read per language, SentencePiece tokenisation with the pretrained vocabulary, the label set kept in
the checkpoint, and the checks that must fail before training starts.

Not a registered task: `xlmr_sentence_classification` and `xlmr_token_classification` subclass it.

Tokenisation: fine-tuning sets are small (XNLI: 393k pairs), so the tasks read raw text and encode
it with SentencePiece when a split is loaded, instead of a separate binarisation step. The
SentencePiece model and dict.txt are those of the pretrained model: by default the ones beside the
pretrained checkpoint (`--finetune-from-model`, or `--restore-file`), as an XLM-R release or `make
demo` output holds them; `--spm-model` names another SentencePiece model, with its dict.txt beside it
(the same option as task `xlmr_span_qa`).
"""

import dataclasses
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import sentencepiece as spm
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask
from omegaconf import II, MISSING

from fairseq_xlmr.checkpoint import load_dictionary
from fairseq_xlmr.files import DICT_FILE, SPM_FILE
from fairseq_xlmr.finetune import split_files
from fairseq_xlmr.preprocess.binarize import build_id_table
from fairseq_xlmr.task_checks import (
    check_fits_model,
    check_matches_pretrained,
    pretrained_checkpoint,
    resolve_vocab_files,
)

logger = logging.getLogger(__name__)

SPLIT_FIELDS = {"train": "train_file", "valid": "valid_file", "test": "test_file"}


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
    train_languages: str = field(default="en", metadata={"help":
        "comma-separated languages to fine-tune on: 'en' is the paper's cross-lingual transfer (zero-shot "
        "to the others), 'all' every language with a training file (translate-train-all)"})
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
    """Base of the fine-tuning tasks. Subclasses define `metric_name`, `read_file`, `example_labels`,
    `build_dataset` and `add_head`.

    Languages: `train_languages`, `eval_languages` and `languages` (their union, eval first);
    batches carry `language`, positions in `languages`. The label set (`labels`, sorted labels of
    the training data) and the train languages live in the task state, so they are saved in every
    checkpoint and an evaluation maps ids to labels as training did, without the training files.
    """

    cfg: XlmrFinetuneConfig

    def __init__(self, cfg: XlmrFinetuneConfig, dictionary, sp):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.sp = sp
        self.id_table = build_id_table(sp, dictionary)
        self.eval_languages: List[str] = []
        self._examples: Dict[str, list] = {}  # split -> examples read at setup, until load_dataset
        self._files: Dict[str, list] = {}  # path -> examples, while setup reads a file more than once
        self.state.add_factory("labels", self._labels_from_training_data)
        # Named languages, or none for 'all' when the training files are not read (evaluation).
        self.state.add_factory("train_languages", lambda: split_files.parse_languages(
            cfg.train_languages, "train_languages") or [])

    @classmethod
    def setup_task(cls, cfg: XlmrFinetuneConfig, from_checkpoint=False, **kwargs):
        cls.check_config(cfg)
        dict_path, spm_path = resolve_vocab_files(cfg)
        task = cls(cfg, load_dictionary(dict_path), spm.SentencePieceProcessor(model_file=spm_path))
        task.eval_languages = task._resolve_languages(cfg.eval_languages, "eval_languages", "valid")
        # Evaluation (from_checkpoint): labels and train languages come from the checkpoint's task
        # state, and the training files may be gone. Training: read every split now, so that bad
        # data fails before the first update.
        if not from_checkpoint:
            train_languages = task._resolve_languages(cfg.train_languages, "train_languages", "train")
            task.state.merge_state_dict({"train_languages": train_languages})
            for split in ("train", "valid", "test"):
                if split == "train" or getattr(cfg, SPLIT_FIELDS[split]):
                    task._examples[split] = task._read_split(split)
            for split in ("valid", "test"):
                task._check_labels(split, task._examples.get(split, []))
            task._examples.pop("test", None)  # checked; fairseq-train never loads it (finetune-eval does)
            logger.info("train languages: %s; labels (%d): %s", ",".join(train_languages), len(task.labels),
                        " ".join(task.labels))
        task._files.clear()
        logger.info("eval languages: %s", ",".join(task.eval_languages))
        return task

    @classmethod
    def check_config(cls, cfg: XlmrFinetuneConfig):
        if cfg.max_length < 8:
            raise ValueError(f"`task.max_length` must be >= 8, got {cfg.max_length}; XTREME used 128.")
        metric, best = cls.metric_name(cfg), cfg.best_checkpoint_metric
        if best == "loss":
            logger.warning("checkpoints are selected on dev loss; XLM-R selected on the average dev %s: pass "
                           "--best-checkpoint-metric %s --maximize-best-checkpoint-metric", metric, metric)
        elif best != metric and not best.startswith(metric + "_"):
            raise ValueError(f"`checkpoint.best_checkpoint_metric` is {best!r}, which this task does not log; use "
                             f"'{metric}' (the all-language average), '{metric}_<lang>' or 'loss'.")
        elif not cfg.maximize_best_checkpoint_metric:
            raise ValueError(f"`checkpoint.best_checkpoint_metric` {best!r} is higher-is-better but "
                             "`checkpoint.maximize_best_checkpoint_metric` is off: the worst checkpoint would be "
                             "kept. Add --maximize-best-checkpoint-metric.")

    @classmethod
    def metric_name(cls, cfg) -> str:
        """The metric logged per language and averaged (`accuracy` or `f1`), in percent."""
        return "accuracy"

    # ------------------------------------------------------------------ languages, files, labels

    @property
    def languages(self) -> List[str]:
        return list(dict.fromkeys(self.eval_languages + self.train_languages))

    @property
    def labels(self) -> List[str]:
        return self.state.labels

    @property
    def train_languages(self) -> List[str]:
        return self.state.train_languages

    @property
    def train_size(self) -> int:
        """Number of training examples (sentences or pairs), read from the files if not loaded yet."""
        if "train" in self.datasets:
            return len(self.datasets["train"])
        return len(self._examples.get("train") or self._read_split("train"))

    def _labels_from_training_data(self) -> List[str]:
        examples = self._examples.get("train") or self._read_split("train")
        return sorted({label for example in examples for label in self.example_labels(example)})

    def _split_languages(self, split: str) -> List[str]:
        return self.train_languages if split == "train" else self.eval_languages

    def _pattern(self, split: str) -> str:
        if split not in SPLIT_FIELDS:
            raise ValueError(f"unknown split {split!r}; this task reads {', '.join(SPLIT_FIELDS)} (set "
                             "--train-subset/--valid-subset to those names).")
        return getattr(self.cfg, SPLIT_FIELDS[split])

    def _resolve_languages(self, value: str, field_name: str, split: str) -> List[str]:
        languages = split_files.parse_languages(value, field_name)
        pattern, data = self._pattern(split), self.cfg.data
        if split_files.is_per_language(pattern, SPLIT_FIELDS[split]):
            available = split_files.discover_languages(data, pattern)
        else:
            available = sorted({example.language for example in self._read_file_checked(split, None)})
        if not available:
            raise ValueError(f"`task.{SPLIT_FIELDS[split]}` {pattern!r} matches no file under {data!r}; fix the "
                             "pattern or --data.")
        if languages is None:
            return available
        unknown = [lang for lang in languages if lang not in available]
        if unknown:
            raise ValueError(f"`task.{field_name}` names {unknown}, but {split} data under {data!r} "
                             f"({pattern!r}) has only {available}; fix the language codes or add the files.")
        return languages

    def _read_file_checked(self, split: str, lang: Optional[str]) -> list:
        pattern = self._pattern(split)
        if lang is None:
            path = os.path.join(self.cfg.data, pattern)
        else:
            path = split_files.language_file(self.cfg.data, pattern, lang)
        if path is None or not os.path.isfile(path):
            shown = pattern.replace(split_files.LANG, lang or split_files.LANG)
            raise ValueError(f"{split} file missing: `task.{SPLIT_FIELDS[split]}` {shown!r} does not exist under "
                             f"{self.cfg.data!r}; add the file, fix the pattern, or drop the language.")
        if str(path) not in self._files:
            self._files[str(path)] = self.read_file(str(path), lang)
        return self._files[str(path)]

    def _read_split(self, split: str) -> list:
        """Examples of `split` for its languages, each example's `language` set."""
        languages = self._split_languages(split)
        if split_files.is_per_language(self._pattern(split), SPLIT_FIELDS[split]):
            # A per-language file belongs to its language, whatever a row says.
            examples = [dataclasses.replace(example, language=lang)
                        for lang in languages for example in self._read_file_checked(split, lang)]
        else:
            wanted = set(languages)
            examples = [example for example in self._read_file_checked(split, None) if example.language in wanted]
        counts = Counter(example.language for example in examples)
        empty = [lang for lang in languages if not counts[lang]]
        if empty:
            raise ValueError(f"{split} data has no example for {empty}; fix `task.{SPLIT_FIELDS[split]}` or "
                             "drop the language.")
        logger.info("%s: %d examples (%s)", split, len(examples),
                    ", ".join(f"{lang} {counts[lang]}" for lang in languages))
        return examples

    def _check_labels(self, split: str, examples: list):
        known = set(self.labels)
        for example in examples:
            for label in self.example_labels(example):
                if label not in known:
                    raise ValueError(f"label {label!r} in {split} ({example.language}) does not occur in the "
                                     f"training data, whose labels are {sorted(known)}: the classifier has no "
                                     "output for it. Fix the label spelling or add training examples with it.")

    # ------------------------------------------------------------------ fairseq API

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        examples = self._examples.pop(split, None)
        if examples is None:
            examples = self._read_split(split)
            if split != "train":
                self._check_labels(split, examples)
            self._files.clear()
        self.datasets[split] = self.build_dataset(split, examples)
        return self.datasets[split]

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

    def read_file(self, path: str, language: Optional[str]) -> list:
        raise NotImplementedError

    def example_labels(self, example) -> List[str]:
        raise NotImplementedError

    def build_dataset(self, split: str, examples: list):
        raise NotImplementedError

    def add_head(self, model):
        raise NotImplementedError
