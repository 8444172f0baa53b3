"""Multilingual masked-LM pretraining with α-smoothed language sampling: XLM-R (Conneau et al., 2020)."""

import logging
import os
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Tuple

import numpy as np
from fairseq import utils
from fairseq.data import (
    Dictionary,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    PrependTokenDataset,
    RawLabelDataset,
    SortDataset,
    TokenBlockDataset,
    data_utils,
)
from fairseq.data.shorten_dataset import maybe_shorten_dataset
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from fairseq.tasks.language_modeling import SAMPLE_BREAK_MODE_CHOICES, SHORTEN_METHOD_CHOICES
from omegaconf import II, MISSING

from fairseq_xlmr.data.language_sampling import check_alpha, sampling_probs, size_ratios
from fairseq_xlmr.data.language_sampling_dataset import LanguageSamplingDataset
from fairseq_xlmr.data.masking import SPM_WORD_START, XlmrMaskTokensDataset
from fairseq_xlmr.data.padding import PadToMultipleDataset
from fairseq_xlmr.files import DICT_FILE, SPM_FILE, parse_list
from fairseq_xlmr.preprocess.spm import check_spm_matches_dict
from fairseq_xlmr.task_checks import check_fits_model, check_matches_pretrained

logger = logging.getLogger(__name__)

SAMPLING_UNIT_CHOICES = ChoiceEnum(["sentences", "tokens"])


@dataclass
class XlmrMlmConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help":
        "colon-separated data-bin dirs (shards), each with <lang>/train.{bin,idx}; epoch e reads shard "
        "(e-1) mod #shards"})
    languages: str = field(default="", metadata={"help":
        "comma-separated languages (subdirectories of each data dir); empty: every subdirectory of the "
        "first data dir that holds training data, sorted"})
    multilang_sampling_alpha: float = field(default=0.3, metadata={"help":
        "α of q_i ∝ p_i^α, in (0, 1]: 1 samples languages by data size, smaller values up-sample "
        "low-resource languages; XLM-R used 0.3"})
    sampling_unit: SAMPLING_UNIT_CHOICES = field(default="sentences", metadata={"help":
        "what p_i counts: sentences (as in the XLM-R paper) or tokens"})
    sample_break_mode: SAMPLE_BREAK_MODE_CHOICES = field(default="complete", metadata={"help":
        "how sentences are packed into samples; 'complete' (RoBERTa's FULL-SENTENCES, fairseq's "
        "pretraining recipe) fills samples with whole sentences and never cuts one"})
    tokens_per_sample: int = field(default=512, metadata={"help":
        "max tokens per sample including <s>; at most the model's max_positions"})
    shorten_method: SHORTEN_METHOD_CHOICES = field(default="truncate", metadata={"help":
        "how to shorten sentences longer than tokens_per_sample - 1, which fairseq would otherwise "
        "drop in training and stop on in validation"})
    mask_prob: float = field(default=0.15, metadata={"help": "fraction of tokens (or words) to predict"})
    leave_unmasked_prob: float = field(default=0.1, metadata={"help":
        "fraction of the predicted tokens left unchanged in the input"})
    random_token_prob: float = field(default=0.1, metadata={"help":
        "fraction of the predicted tokens replaced by a random ordinary piece"})
    mask_whole_words: bool = field(default=False, metadata={"help":
        "mask whole words: a piece starting with SentencePiece's '▁' and the pieces after it"})
    pad_to_multiple: int = field(default=1, metadata={"help":
        "pad each batch's length up to a multiple of this; on GPU 64 keeps the number of distinct shapes "
        "small, so cuDNN attention plans are reused instead of rebuilt for every new length; 1 pads to the "
        "longest sample only"})
    # Shared with the rest of the run (no help: fairseq sets them from common/dataset options).
    seed: int = II("common.seed")
    train_subset: str = II("dataset.train_subset")
    finetune_from_model: Optional[str] = II("checkpoint.finetune_from_model")


class LanguageStats(NamedTuple):
    """Sizes of one language's split, in the units the sampling table reports."""

    sentences: int
    tokens: int
    blocks: int


@register_task("xlmr_mlm", dataclass=XlmrMlmConfig)
class XlmrMlmTask(FairseqTask):
    """Masked-LM pretraining on monolingual data of many languages, sampled with q_i ∝ p_i^α.

    Batches carry `net_input.lang_id`, (batch,) int64 positions in `languages`.
    """

    cfg: XlmrMlmConfig

    def __init__(self, cfg: XlmrMlmConfig, dictionary: Dictionary, languages: List[str]):
        super().__init__(cfg)
        self.dictionary = dictionary
        self._languages = list(languages)
        # Appended last, as fairseq's masked_lm does, so ids match XLM-R (<mask> = 250001).
        self.mask_idx = dictionary.add_symbol("<mask>")
        # (data dir, sizes, blocks drawn per epoch) of the loaded training split, for the sampling table.
        self._train_table: Optional[Tuple[str, List[LanguageStats], np.ndarray]] = None

    @classmethod
    def setup_task(cls, cfg: XlmrMlmConfig, **kwargs):
        check_config(cfg)
        paths = data_paths(cfg.data)
        languages = resolve_languages(cfg, paths)
        dictionary = load_shared_dictionary(paths, languages)
        if cfg.mask_whole_words and not any(s.startswith(SPM_WORD_START) for s in dictionary.symbols):
            raise ValueError(f"`task.mask_whole_words` needs SentencePiece pieces that mark word starts with "
                             f"'{SPM_WORD_START}' (U+2581), but the dictionary of {paths[0]} has none; turn "
                             f"the option off or binarise with `xlmr train-spm` pieces.")
        logger.info("dictionary: %d types; %d languages: %s", len(dictionary), len(languages), ", ".join(languages))
        return cls(cfg, dictionary, languages)

    @property
    def languages(self) -> List[str]:
        return self._languages

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def max_positions(self):
        return self.cfg.tokens_per_sample

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        check_fits_model(model, self.cfg.tokens_per_sample, "tokens_per_sample",
                         "lower --tokens-per-sample or raise --max-positions.")
        if not from_checkpoint and self.cfg.finetune_from_model:  # continued pretraining (language adaptation)
            check_matches_pretrained(model.args, self.cfg.finetune_from_model)
        return model

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        """Load `split` of every language, or of one language for a split named `<split>_<lang>`."""
        paths = data_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)]
        base_split, languages = self._split_languages(split)
        is_train = split == self.cfg.train_subset
        loaded = []  # (language, blocks, stats)
        for lang in languages:
            blocks, stats = self._load_blocks(data_path, base_split, lang, combine)
            if blocks is None and is_train:
                raise ValueError(f"language {lang!r} has no {split} data in {data_path}/{lang}; "
                                 f"binarise it or leave it out of `task.languages`.")
            if blocks is None:
                logger.warning("no %s data for language %s in %s; it is left out of %s",
                               base_split, lang, data_path, split)
                continue
            loaded.append((lang, blocks, stats))
        if not loaded:  # only a held-out split gets here: a language without train data raised above
            flag = "--test-lines" if base_split == "test" else "--valid-lines"
            raise ValueError(f"split {split!r} is missing: no language in `task.data` {data_path!r} has "
                             f"<lang>/{base_split}.{{bin,idx}}. Re-run `xlmr binarize` with {flag} N (N held-out "
                             f"sentences per language), or give fairseq-train --disable-validation.")
        stats = [s for _, _, s in loaded]

        if is_train:
            # Re-sample languages with q_i ∝ p_i^α, re-drawn every epoch by set_epoch.
            counts = self._sampling_counts(stats)
            ratios = size_ratios(counts, sampling_probs(counts, self.cfg.multilang_sampling_alpha))
        else:
            # Evaluation uses every block once: each language at its natural size.
            ratios = np.ones(len(loaded))
            logger.info("%s: %d blocks (%s) from %s", split, sum(s.blocks for s in stats),
                        ", ".join("%s %d" % (lang, s.blocks) for lang, _, s in loaded), data_path)
        dataset = LanguageSamplingDataset([blocks for _, blocks, _ in loaded], ratios, self.cfg.seed, epoch,
                                          language_ids=[self._languages.index(lang) for lang, _, _ in loaded])
        if is_train:
            self._train_table = (data_path, stats, dataset.counts_per_language())
        self.datasets[split] = self._mlm_batches(dataset, fixed_mask=not is_train, epoch=epoch)

    def _split_languages(self, split: str) -> Tuple[str, List[str]]:
        """`valid_en` → ("valid", ["en"]); any other split → (split, all languages)."""
        for lang in self._languages:
            if split.endswith("_" + lang) and len(split) > len(lang) + 1:
                return split[: -len(lang) - 1], [lang]
        return split, self._languages

    def _sampling_counts(self, stats: List[LanguageStats]) -> np.ndarray:
        if self.cfg.sampling_unit == "tokens":
            return np.array([s.tokens for s in stats], dtype=np.float64)
        return np.array([s.sentences for s in stats], dtype=np.float64)

    def _load_blocks(self, data_path, split, lang, combine):
        """One language's split as unmasked samples `<s> ...`, or (None, None) when its files are missing."""
        split_path = os.path.join(data_path, lang, split)
        # Every sentence ends with </s>, so an empty .bin is a language without sentences (and
        # cannot be memory-mapped).
        if os.path.isfile(split_path + ".bin") and os.path.getsize(split_path + ".bin") == 0:
            raise ValueError(f"language {lang!r} has 0 sentences in {split_path}.{{bin,idx}}; binarise "
                             f"non-empty text for it or leave it out of `task.languages`.")
        # One item per line of text, each ending with </s>, as `xlmr binarize` wrote them.
        sentences = data_utils.load_indexed_dataset(split_path, self.dictionary, combine=combine)
        if sentences is None:
            return None, None
        # Overlong sentences would make blocks the model cannot take (one slot stays for <s>).
        dataset = maybe_shorten_dataset(sentences, split, "", self.cfg.shorten_method,
                                        self.cfg.tokens_per_sample - 1, self.cfg.seed)
        # Pack sentences into samples of at most tokens_per_sample - 1 tokens. With 'eos' every
        # sentence is a sample already (and fairseq's 'eos' path needs np.compat, gone in numpy 2).
        if self.cfg.sample_break_mode != "eos":
            dataset = TokenBlockDataset(dataset, dataset.sizes, self.cfg.tokens_per_sample - 1,
                                        pad=self.dictionary.pad(), eos=self.dictionary.eos(),
                                        break_mode=self.cfg.sample_break_mode)
        # <s> opens every sample, as in RoBERTa (the [CLS] position of sentence tasks).
        dataset = PrependTokenDataset(dataset, self.dictionary.bos())
        return dataset, LanguageStats(len(sentences), int(sentences.sizes.sum()), len(dataset))

    def _mlm_batches(self, dataset: LanguageSamplingDataset, fixed_mask: bool, epoch: int):
        """Mask the combined samples and build the batch dict the model and criterion read."""
        pad = self.dictionary.pad()
        # Masked after sampling: every copy of an up-sampled sample gets its own 80/10/10 mask, new
        # every epoch; evaluation keeps one mask per sample, the same in `valid` and `valid_<lang>`.
        source, target = XlmrMaskTokensDataset.apply_mask(
            dataset, self.dictionary, self.mask_idx, self.cfg.seed, self.cfg.mask_prob,
            self.cfg.leave_unmasked_prob, self.cfg.random_token_prob, self.cfg.mask_whole_words,
            fixed_mask=fixed_mask, item_key=dataset.item_key,
        )
        # Padded inputs, their lengths, each sample's language (its position in `languages`) and targets.
        batches = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {
                    "src_tokens": PadToMultipleDataset(source, pad, self.cfg.pad_to_multiple),
                    "src_lengths": NumelDataset(source, reduce=False),
                    "lang_id": RawLabelDataset(dataset.lang_ids),
                },
                "target": PadToMultipleDataset(target, pad, self.cfg.pad_to_multiple),
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(source, reduce=True),
            },
            sizes=[dataset.sizes],
        )
        # Batch by size, ties broken by a seeded shuffle (as masked_lm); sizes follow the epoch's draw.
        with data_utils.numpy_seed(self.cfg.seed + epoch):
            shuffle = np.random.permutation(len(dataset))
        return SortDataset(batches, sort_order=[shuffle, dataset.sizes])

    def begin_epoch(self, epoch, model):
        model.set_epoch(epoch)
        self.log_language_sampling(epoch)

    def log_language_sampling(self, epoch: int):
        """Log each language's sizes, p, q and up/down-sampling ratio for `epoch`."""
        if self._train_table is None:
            return
        data_path, stats, drawn = self._train_table
        counts = self._sampling_counts(stats)
        q = sampling_probs(counts, self.cfg.multilang_sampling_alpha)
        logger.info("language sampling, epoch %d, %s (alpha=%g, p and q by %s):", epoch, data_path,
                    self.cfg.multilang_sampling_alpha, self.cfg.sampling_unit)
        logger.info("%-8s %10s %12s %7s %7s %7s %-13s %s", "lang", "sentences", "tokens", "p", "q", "ratio", "",
                    "blocks -> per epoch")
        for lang, st, p_i, q_i, ratio, n in zip(self._languages, stats, counts / counts.sum(), q,
                                               size_ratios(counts, q), drawn):
            direction = "up-sampled" if ratio > 1 else "down-sampled" if ratio < 1 else "as is"
            logger.info("%-8s %10d %12d %7.4f %7.4f %7.3f %-13s %d -> %d", lang, st.sentences, st.tokens,
                        p_i, q_i, ratio, direction, st.blocks, n)


def check_config(cfg: XlmrMlmConfig):
    """Reject bad settings before any data is read."""
    check_alpha(cfg.multilang_sampling_alpha)
    if not 0.0 < cfg.mask_prob < 1.0:
        raise ValueError(f"`task.mask_prob` must be in (0, 1), got {cfg.mask_prob}; XLM-R used 0.15.")
    for name, value in (("leave_unmasked_prob", cfg.leave_unmasked_prob),
                        ("random_token_prob", cfg.random_token_prob)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"`task.{name}` must be in [0, 1], got {value}; XLM-R used 0.1.")
    if cfg.leave_unmasked_prob + cfg.random_token_prob > 1.0:
        raise ValueError(f"`task.leave_unmasked_prob` + `task.random_token_prob` must be at most 1, got "
                         f"{cfg.leave_unmasked_prob} + {cfg.random_token_prob}; XLM-R used 0.1 + 0.1.")
    if cfg.pad_to_multiple < 1 or cfg.tokens_per_sample % cfg.pad_to_multiple:
        raise ValueError(f"`task.pad_to_multiple` must be >= 1 and divide `task.tokens_per_sample` "
                         f"({cfg.tokens_per_sample}), got {cfg.pad_to_multiple}; padded batches would otherwise "
                         "outgrow the positions the model has. Use 64 on GPU with 512-token samples, 1 on CPU.")
    if cfg.tokens_per_sample < 2:
        raise ValueError(f"`task.tokens_per_sample` must be at least 2 (<s> and one token), got "
                         f"{cfg.tokens_per_sample}; XLM-R used 512.")


def data_paths(data: str) -> List[str]:
    """The shard dirs of `task.data`, each checked to exist."""
    paths = [p for p in utils.split_paths(data) if p]
    if not paths:
        raise ValueError("`task.data` is empty; give the data-bin directory written by `xlmr binarize`.")
    for path in paths:
        if not os.path.isdir(path):
            raise ValueError(f"`task.data` directory {path!r} does not exist; give the data-bin directory "
                             f"written by `xlmr binarize` (colon-separated for shards).")
    return paths


def resolve_languages(cfg: XlmrMlmConfig, paths: List[str]) -> List[str]:
    """`task.languages`, or the sorted subdirectories of the first shard that hold training data."""
    first = paths[0]
    found = sorted(
        name for name in os.listdir(first) if os.path.isfile(os.path.join(first, name, cfg.train_subset + ".idx"))
    )
    if not cfg.languages:
        if not found:
            shards = [os.path.join(first, name) for name in sorted(os.listdir(first)) if name.startswith("shard")]
            hint = f" For sharded data give the shards colon-separated: {':'.join(shards)}." if shards else ""
            raise ValueError(f"`task.data` directory {first!r} has no <lang>/{cfg.train_subset}.idx; expected the "
                             f"layout of `xlmr binarize`: <data>/<lang>/{cfg.train_subset}.{{bin,idx}}.{hint}")
        return found
    languages = parse_list(cfg.languages, "task.languages")
    for path in paths:
        for lang in languages:
            if not os.path.isdir(os.path.join(path, lang)):
                raise ValueError(f"`task.languages` lists {lang!r} but there is no directory "
                                 f"{os.path.join(path, lang)!r} (languages with data in {first}: "
                                 f"{', '.join(found) or 'none'}); fix the list or binarise {lang}.")
    return languages


def load_shared_dictionary(paths: List[str], languages: List[str]) -> Dictionary:
    """The one dictionary every shard and language uses, checked to be identical everywhere."""
    per_shard = [_shard_dictionary(path, languages) for path in paths]
    for other in per_shard[1:]:
        _check_same_dictionary(per_shard[0], other, "shards")
    return per_shard[0][1]


def _shard_dictionary(path: str, languages: List[str]) -> Tuple[str, Dictionary]:
    """(file, dictionary) of one shard: its top dict.txt, else the (identical) <lang>/dict.txt files."""
    top = os.path.join(path, DICT_FILE)
    files = [top] if os.path.isfile(top) else [os.path.join(path, lang, DICT_FILE) for lang in languages]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise ValueError(f"no dictionary for `task.data` {path!r}: {top} is missing and so are "
                         f"{', '.join(missing)}; binarise with `xlmr binarize` or fairseq-preprocess --srcdict.")
    loaded = [(f, Dictionary.load(f)) for f in files]
    for other in loaded[1:]:
        _check_same_dictionary(loaded[0], other, "languages")
    for dict_file, _ in loaded:
        _check_spm_matches(dict_file)
    return loaded[0]


def _check_same_dictionary(a: Tuple[str, Dictionary], b: Tuple[str, Dictionary], between: str):
    (file_a, dict_a), (file_b, dict_b) = a, b
    if dict_a.symbols == dict_b.symbols:
        return
    first = next((i for i, (x, y) in enumerate(zip(dict_a.symbols, dict_b.symbols)) if x != y),
                 min(len(dict_a), len(dict_b)))
    sym_a = dict_a.symbols[first] if first < len(dict_a) else "<end>"
    sym_b = dict_b.symbols[first] if first < len(dict_b) else "<end>"
    raise ValueError(f"dictionaries differ between {between}: {file_a} has {len(dict_a)} symbols, {file_b} has "
                     f"{len(dict_b)}; first difference at id {first} ({sym_a!r} vs {sym_b!r}). Binarise all "
                     f"data with the same dict.txt (fairseq-preprocess --srcdict, or one `xlmr binarize` run).")


def _check_spm_matches(dict_file: str):
    """A SentencePiece model beside dict.txt must be the one that made it (fairseq id = SPM id + 1)."""
    spm_file = os.path.join(os.path.dirname(dict_file), SPM_FILE)
    if os.path.isfile(spm_file):
        check_spm_matches_dict(spm_file, dict_file)
