"""Tasks xlmr_sentence_classification / xlmr_token_classification: encoding, batches, and the errors
that must come before training starts."""

import pytest
import torch

from fairseq_xlmr.data.label_alignment import IGNORE_INDEX
from fairseq_xlmr.tasks.xlmr_sentence_classification import (
    XlmrSentenceClassificationConfig,
    XlmrSentenceClassificationTask,
    encode_example,
    truncate_longest_first,
)
from fairseq_xlmr.tasks.xlmr_token_classification import XlmrTokenClassificationConfig, XlmrTokenClassificationTask
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm
from tests.fixtures.tiny_finetune import write_conll, write_keyword_tsv

XNLI_HEADER = "language\tgold_label\tsentence1\tsentence2"


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("spm")
    corpus = make_tiny_corpus(root / "corpus", languages=("en", "de"), lines=100)
    return str(make_tiny_spm(root / "spm", corpus, vocab_size=100)["spm"])


def sentence_cfg(data, spm_model, **overrides):
    values = dict(data=str(data), spm_model=spm_model, text_b_column="", seed=1, finetune_from_model=None,
                  restore_file="checkpoint_last.pt", best_checkpoint_metric="accuracy",
                  maximize_best_checkpoint_metric=True)
    values.update(overrides)
    return XlmrSentenceClassificationConfig(**values)


def token_cfg(data, spm_model, **overrides):
    values = dict(data=str(data), spm_model=spm_model, train_file="{lang}/train.txt", valid_file="{lang}/dev.txt",
                  test_file="", seed=1, finetune_from_model=None, restore_file="checkpoint_last.pt",
                  best_checkpoint_metric="f1", maximize_best_checkpoint_metric=True)
    values.update(overrides)
    return XlmrTokenClassificationConfig(**values)


@pytest.fixture
def keyword_data(tmp_path):
    for lang, seed in (("en", 1), ("de", 2)):
        for split, n in (("train", 30), ("dev", 10), ("test", 10)):
            write_keyword_tsv(tmp_path / lang / f"{split}.tsv", lang, n, seed=seed + len(split))
    return tmp_path


def test_truncate_longest_first_cuts_the_longer_side():
    assert truncate_longest_first(5, 3, 8) == (5, 3)
    assert truncate_longest_first(5, 3, 6) == (3, 3)
    assert truncate_longest_first(10, 2, 6) == (4, 2)
    assert truncate_longest_first(4, 4, 5) == (3, 2)  # ties: the second text first, as HF
    assert truncate_longest_first(2, 9, 7) == (2, 5)


def test_pair_encoding_is_xlmr_s_and_fits_max_length():
    import numpy as np

    a, b = np.arange(10, 20), np.arange(30, 33)
    assert encode_example(a[:2], b, 16, 0, 2) == [0, 10, 11, 2, 2, 30, 31, 32, 2]  # <s> A </s></s> B </s>
    assert encode_example(a, b, 10, 0, 2) == [0, 10, 11, 12, 2, 2, 30, 31, 32, 2]  # the long premise is cut
    assert encode_example(a, None, 5, 0, 2) == [0, 10, 11, 12, 2]


def test_sentence_batches_carry_labels_and_languages(keyword_data, spm_model):
    task = XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model, train_languages="all"))
    assert task.labels == ["no", "yes"] and task.train_languages == ["de", "en"] and task.eval_languages == ["de", "en"]
    assert task.state.state_dict == {"labels": ["no", "yes"], "train_languages": ["de", "en"]}  # saved in checkpoints
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    tokens = batch["net_input"]["src_tokens"]
    assert tokens.shape[0] == 20 and (tokens[:, 0] == task.dictionary.bos()).all()
    assert sorted(batch["language"].tolist()) == [0] * 10 + [1] * 10
    assert set(batch["target"].tolist()) <= {0, 1}


def test_unknown_language_names_the_available_ones(keyword_data, spm_model):
    with pytest.raises(ValueError, match=r"eval_languages` names \['sw'\].*has only \['de', 'en'\]"):
        XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model, eval_languages="en,sw"))


def test_missing_split_file_fails_at_setup(keyword_data, spm_model):
    (keyword_data / "de" / "test.tsv").unlink()
    with pytest.raises(ValueError, match=r"test file missing: `task.test_file` 'de/test.tsv'"):
        XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model))
    XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model, test_file=""))  # no test split


def test_eval_label_unseen_in_training_fails_at_setup(keyword_data, spm_model):
    with open(keyword_data / "de" / "dev.tsv", "a", encoding="utf-8") as f:
        f.write("Ein Hund.\tmaybe\n")
    with pytest.raises(ValueError, match=r"label 'maybe' in valid \(de\) does not occur in the training data"):
        XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model))


def test_a_rare_training_label_is_refused_as_a_typo_unless_listed(keyword_data, spm_model, caplog):
    """A typo in a training file would otherwise become a class of its own."""
    import logging

    write_keyword_tsv(keyword_data / "en" / "train.tsv", "en", 200, seed=7)  # ~100 of each label
    with open(keyword_data / "en" / "train.tsv", "a", encoding="utf-8") as f:
        f.write("A cat and a dog.\tyse\n")
    with pytest.raises(ValueError, match=r"training labels 'yse' \(1x\) occur fewer than 3 times, against \d+ for "
                                         r"the most frequent.*--labels no,yes,yse"):
        XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model))
    with pytest.raises(ValueError, match=r"training labels \['yse'\] are not among `task.labels` \['no', 'yes'\]"):
        XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model, labels="no,yes"))
    with caplog.at_level(logging.INFO):
        task = XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model, labels="no,yes,yse"))
    assert task.labels == ["no", "yes", "yse"]  # listed: kept as a class
    assert any(r.getMessage().startswith("training labels: ") and "yse 1" in r.getMessage() for r in caplog.records)


def test_checkpoint_metric_must_be_logged_and_maximised(keyword_data, spm_model):
    with pytest.raises(ValueError, match="maximize_best_checkpoint_metric` is off"):
        XlmrSentenceClassificationTask.setup_task(
            sentence_cfg(keyword_data, spm_model, maximize_best_checkpoint_metric=False))
    with pytest.raises(ValueError, match="'f1', which this task does not log"):
        XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, spm_model, best_checkpoint_metric="f1"))


def test_no_tokenizer_found_explains_the_options(keyword_data):
    with pytest.raises(ValueError, match="--finetune-from-model <pretrained>/model.pt or --spm-model"):
        XlmrSentenceClassificationTask.setup_task(sentence_cfg(keyword_data, ""))


def test_xnli_layout_single_dev_file_with_language_column(tmp_path, spm_model):
    (tmp_path / "train.en.tsv").write_text("premise\thypo\tlabel\nA cat.\tA dog.\tcontradictory\n"
                                           "A cat.\tAn animal.\tentailment\nA cat.\tIt is big.\tneutral\n")
    (tmp_path / "xnli.dev.tsv").write_text(XNLI_HEADER + "\nde\tneutral\tEine Katze.\tSie ist groß.\n"
                                           "en\tentailment\tA cat.\tAn animal.\nru\tneutral\tкот.\tдом.\n")
    cfg = sentence_cfg(tmp_path, spm_model, data_format="xnli", train_file="train.{lang}.tsv",
                       valid_file="xnli.dev.tsv", test_file="", eval_languages="all")
    task = XlmrSentenceClassificationTask.setup_task(cfg)
    assert task.labels == ["contradiction", "entailment", "neutral"]
    assert task.eval_languages == ["de", "en", "ru"] and task.train_languages == ["en"]
    task.load_dataset("valid")
    sample = task.dataset("valid")[0]
    eos = task.dictionary.eos()
    tokens = sample["net_input.src_tokens"].tolist()
    assert tokens[0] == task.dictionary.bos() and tokens[-1] == eos and [eos, eos] in [
        tokens[i:i + 2] for i in range(len(tokens))]  # a pair: </s></s> between the texts


def test_token_windows_score_every_word_once(tmp_path, spm_model):
    for lang in ("en", "de"):
        write_conll(tmp_path / lang / "train.txt", lang, 20, seed=1, min_words=20, max_words=40)
        write_conll(tmp_path / lang / "dev.txt", lang, 5, seed=2, min_words=20, max_words=40, encoding="latin-1")
    cfg = token_cfg(tmp_path, spm_model, max_length=12, window_stride=4, train_languages="en,de")
    task = XlmrTokenClassificationTask.setup_task(cfg)
    assert "O" in task.labels and "B-LOC" in task.labels
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    assert batch["net_input"]["src_tokens"].shape[1] <= 12
    assert batch["window_sentence"].max() == 9 and len(batch["window_sentence"]) > 10  # sentences were split
    scored = batch["target"].ne(IGNORE_INDEX)
    assert torch.equal(scored, batch["word_index"].ge(0))
    assert scored.sum() == batch["num_words"].sum()  # every word scored exactly once


def test_token_task_checks_stride_and_metric(tmp_path, spm_model):
    with pytest.raises(ValueError, match="window_stride` must be in"):
        XlmrTokenClassificationTask.setup_task(token_cfg(tmp_path, spm_model, max_length=16, window_stride=15))
    for lang in ("en", "de"):
        write_conll(tmp_path / lang / "train.txt", lang, 5, seed=1)
        write_conll(tmp_path / lang / "dev.txt", lang, 5, seed=2)
    assert XlmrTokenClassificationTask.setup_task(token_cfg(tmp_path, spm_model, max_length=16)).window_stride == 8
    with pytest.raises(ValueError, match="'accuracy', which this task does not log"):
        XlmrTokenClassificationTask.setup_task(token_cfg(tmp_path, spm_model, best_checkpoint_metric="accuracy"))
