"""Task `xlmr_mlm` and criterion `xlmr_mlm` on tiny data-bins: loading, sampling table, errors, loss."""

import logging
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.logging import metrics

from fairseq_xlmr.criterions.xlmr_mlm import XlmrMlmCriterion
from fairseq_xlmr.data.language_sampling_dataset import LanguageSamplingDataset
from fairseq_xlmr.tasks.xlmr_mlm import XlmrMlmConfig, XlmrMlmTask
from tests.fixtures.fairseq_run import run_cli
from tests.fixtures.tiny_bin import make_tiny_data_bin

TASK_LOGGER = "fairseq_xlmr.tasks.xlmr_mlm"


def _task(data_dir, **overrides):
    settings = dict(data=str(data_dir), seed=1, train_subset="train", tokens_per_sample=32)
    settings.update(overrides)
    return XlmrMlmTask.setup_task(XlmrMlmConfig(**settings))


@pytest.fixture
def two_langs(tmp_path):
    make_tiny_data_bin(tmp_path / "bin", ["sw", "en"], {"en": 300, "sw": 30})
    return tmp_path / "bin"


def _batch(task, split, indices=None):
    dataset = task.datasets[split]
    indices = dataset.ordered_indices() if indices is None else indices
    return dataset.collater([dataset[i] for i in indices])


def _sampling_rows(caplog):
    """The per-language rows of the logged sampling table: {lang: (sentences, tokens, p, q, ratio, blocks, drawn)}."""
    rows = {}
    for record in caplog.records:
        fields = record.getMessage().split()
        if record.name == TASK_LOGGER and len(fields) == 10 and fields[8] == "->":
            rows[fields[0]] = tuple(float(fields[i]) for i in (1, 2, 3, 4, 5, 7, 9))
    return rows


def test_languages_are_discovered_sorted_and_mask_is_appended(two_langs):
    (two_langs / "para").mkdir()  # no train.idx: not a language
    task = _task(two_langs)
    assert task.languages == ["en", "sw"]
    assert task.mask_idx == len(task.dictionary) - 1 == 4 + 40
    assert _task(two_langs, languages="sw").languages == ["sw"]


def test_samples_carry_their_language_and_unmasked_blocks(two_langs):
    task = _task(two_langs)
    task.load_dataset("train")
    batch = _batch(task, "train")
    source = batch["net_input"]["src_tokens"]
    original = torch.where(batch["target"].ne(task.dictionary.pad()), batch["target"], source)
    sampler = _sampling_dataset(task, "train")
    assert set(batch["net_input"]["lang_id"].tolist()) == {0, 1}
    for row, position in enumerate(batch["id"].tolist()):  # id: the position in the epoch
        lang = batch["net_input"]["lang_id"][row].item()
        assert lang == sampler.language_of(position)
        block = sampler.datasets[sampler.dataset_ids[position]][sampler.local_indices[position]]
        assert torch.equal(original[row, : len(block)], block)
        assert block[0] == task.dictionary.bos() and block[-1] == task.dictionary.eos()


def test_pad_to_multiple_rounds_batch_length_up_and_keeps_the_tokens(two_langs):
    plain, padded = _task(two_langs), _task(two_langs, pad_to_multiple=16)
    for task in (plain, padded):
        task.load_dataset("train")
    a, b = _batch(plain, "train", range(8)), _batch(padded, "train", range(8))
    longest = a["net_input"]["src_tokens"].size(1)
    assert longest % 16 != 0  # otherwise the test shows nothing
    assert b["net_input"]["src_tokens"].size(1) == b["target"].size(1) == -(-longest // 16) * 16
    pad = plain.dictionary.pad()
    extra = b["net_input"]["src_tokens"][:, longest:]
    assert extra.eq(pad).all() and b["target"][:, longest:].eq(pad).all()
    assert torch.equal(b["net_input"]["src_tokens"][:, :longest], a["net_input"]["src_tokens"])
    assert torch.equal(b["target"][:, :longest], a["target"])


def _sampling_dataset(task, split):
    """The LanguageSamplingDataset under the masks of a loaded split."""
    dataset = task.datasets[split].dataset.defn["net_input.src_tokens"]  # SortDataset -> NestedDictionaryDataset
    while not isinstance(dataset, LanguageSamplingDataset):
        dataset = dataset.dataset
    return dataset


def test_logged_q_follows_the_formula_for_two_languages(two_langs, caplog):
    task = _task(two_langs)
    task.load_dataset("train")
    with caplog.at_level(logging.INFO, logger=TASK_LOGGER):
        task.begin_epoch(1, SimpleNamespace(set_epoch=lambda epoch: None))
    rows = _sampling_rows(caplog)
    assert set(rows) == {"en", "sw"} and rows["en"][0] == 300 and rows["sw"][0] == 30
    p = np.array([300, 30]) / 330
    q = p**0.3 / (p**0.3).sum()
    for i, lang in enumerate(["en", "sw"]):
        sentences, tokens, p_i, q_i, ratio, blocks, drawn = rows[lang]
        assert p_i == pytest.approx(p[i], abs=1e-4) and q_i == pytest.approx(q[i], abs=1e-4)
        assert ratio == pytest.approx(q[i] * 330 / sentences, abs=1e-3)
        assert drawn == round(q[i] * 330 / sentences * blocks)
    assert "alpha=0.3, p and q by sentences" in caplog.text


def test_token_sampling_unit_counts_tokens(two_langs, caplog):
    task = _task(two_langs, sampling_unit="tokens", multilang_sampling_alpha=0.5)
    task.load_dataset("train")
    with caplog.at_level(logging.INFO, logger=TASK_LOGGER):
        task.log_language_sampling(1)
    rows = _sampling_rows(caplog)
    tokens = np.array([rows["en"][1], rows["sw"][1]])
    assert rows["en"][2] == pytest.approx(tokens[0] / tokens.sum(), abs=1e-4)
    assert rows["sw"][3] == pytest.approx(np.sqrt(tokens[1]) / np.sqrt(tokens).sum(), abs=1e-4)


def test_shards_rotate_by_epoch(tmp_path, caplog):
    for k, n in enumerate([50, 80]):
        make_tiny_data_bin(tmp_path / f"shard{k}", ["en", "sw"], {"en": n, "sw": 10}, seed=k)
    task = _task(f"{tmp_path / 'shard0'}:{tmp_path / 'shard1'}")
    seen = []
    for epoch in (1, 2, 3):
        task.load_dataset("train", epoch=epoch)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=TASK_LOGGER):
            task.log_language_sampling(epoch)
        seen.append(_sampling_rows(caplog)["en"][0])
        assert f"shard{(epoch - 1) % 2}" in caplog.text
    assert seen == [50, 80, 50]


def test_valid_lang_split_is_one_language_with_the_same_masks(two_langs):
    task = _task(two_langs)
    task.load_dataset("valid")
    task.load_dataset("valid_sw")
    assert "valid_en" not in task.datasets  # nothing is added behind the user's back
    sw_only = [task.datasets["valid_sw"][i] for i in range(len(task.datasets["valid_sw"]))]
    combined = [task.datasets["valid"][i] for i in range(len(task.datasets["valid"]))]
    from_sw = [item for item in combined if item["net_input.lang_id"] == task.languages.index("sw")]
    assert len(sw_only) == len(from_sw) > 0
    assert all(item["net_input.lang_id"] == task.languages.index("sw") for item in sw_only)
    for a, b in zip(sw_only, from_sw):  # the same samples with the same masks
        assert torch.equal(a["net_input.src_tokens"], b["net_input.src_tokens"])
        assert torch.equal(a["target"], b["target"])


def test_real_fairseq_preprocess_output_is_readable(tmp_path):
    from fairseq_cli.preprocess import cli_main

    make_tiny_data_bin(tmp_path / "ref", ["en"], {"en": 5})
    lines = {"en": ["▁p0 p1 p2 ▁p3", "p4 ▁p6 ▁p9"], "de": ["▁p12 p13", "▁p3 ▁p0 p1", "▁p6"]}
    for lang, text in lines.items():
        (tmp_path / f"{lang}.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
        run_cli(cli_main, ["--only-source", "--srcdict", tmp_path / "ref" / "dict.txt", "--workers", "1",
                           "--trainpref", tmp_path / f"{lang}.txt", "--validpref", tmp_path / f"{lang}.txt",
                           "--destdir", tmp_path / "bin" / lang], "fairseq-preprocess")
    assert not (tmp_path / "bin" / "dict.txt").exists()  # one dict.txt per language
    task = _task(tmp_path / "bin", sample_break_mode="eos")
    assert task.languages == ["de", "en"]
    task.load_dataset("valid")
    sampler = _sampling_dataset(task, "valid")
    decoded = [task.dictionary.string(sampler[i][1:]) for i in range(len(sampler))]
    assert decoded == lines["de"] + lines["en"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"multilang_sampling_alpha": 1.7},
         "`task.multilang_sampling_alpha` must be in (0, 1], got 1.7; XLM-R used 0.3."),
        ({"multilang_sampling_alpha": 0.0}, "`task.multilang_sampling_alpha` must be in (0, 1], got 0.0"),
        ({"mask_prob": 1.5}, "`task.mask_prob` must be in (0, 1), got 1.5"),
        ({"leave_unmasked_prob": 0.6, "random_token_prob": 0.6}, "must be at most 1, got 0.6 + 0.6"),
        ({"languages": "en,xx"}, "`task.languages` lists 'xx' but there is no directory"),
        ({"languages": "en,en"}, "`task.languages` lists en more than once"),
        ({"data": "/nonexistent/data-bin"}, "`task.data` directory '/nonexistent/data-bin' does not exist"),
        ({"pad_to_multiple": 5}, "`task.pad_to_multiple` must be >= 1 and divide `task.tokens_per_sample` (32), got 5"),
    ],
)
def test_bad_settings_fail_at_setup(two_langs, overrides, message):
    with pytest.raises(ValueError) as err:
        _task(two_langs, **overrides)
    assert message in str(err.value)


def test_empty_language_and_missing_train_fail_before_training(tmp_path):
    make_tiny_data_bin(tmp_path, ["en", "sw"], {"en": 20, "sw": 0})
    with pytest.raises(ValueError, match=r"language .sw. has 0 sentences in .*sw/train.\{bin,idx\}"):
        _task(tmp_path).load_dataset("train")
    (tmp_path / "yo").mkdir()
    with pytest.raises(ValueError, match="language 'yo' has no train data"):
        _task(tmp_path, languages="en,yo").load_dataset("train")


def test_dictionaries_that_differ_are_rejected(tmp_path):
    make_tiny_data_bin(tmp_path / "a", ["en", "sw"], {"en": 5, "sw": 5}, per_language_dict=True)
    assert _task(tmp_path / "a").languages == ["en", "sw"]  # identical per-language dicts are fine
    make_tiny_data_bin(tmp_path / "b", ["de"], {"de": 5}, vocab_size=41, per_language_dict=True)
    os.replace(tmp_path / "b" / "de" / "dict.txt", tmp_path / "a" / "sw" / "dict.txt")
    with pytest.raises(ValueError, match=r"dictionaries differ between languages: .*en/dict.txt has 44 symbols, "
                                         r".*sw/dict.txt has 45; first difference at id 44"):
        _task(tmp_path / "a")


def test_whole_word_masking_needs_word_start_pieces(two_langs):
    dict_file = two_langs / "dict.txt"
    dict_file.write_text(dict_file.read_text(encoding="utf-8").replace("\u2581", ""), encoding="utf-8")
    with pytest.raises(ValueError, match="`task.mask_whole_words` needs SentencePiece pieces"):
        _task(two_langs, mask_whole_words=True)


def test_spm_model_beside_dict_must_match_it(two_langs, tmp_path):
    import sentencepiece as spm

    text = tmp_path / "text.txt"
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po"]
    rng = np.random.default_rng(0)
    text.write_text("".join(" ".join("".join(rng.choice(syllables, 3)) for _ in range(8)) + "\n" for _ in range(300)))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(two_langs / "sentencepiece.bpe"),
                                   vocab_size=30, model_type="unigram", minloglevel=2, num_threads=1)
    with pytest.raises(ValueError, match=r"dict.txt' has 40 entries but .*sentencepiece.bpe.model' has 30 "
                                         r"pieces; the dict must list SPM ids >= 3, i.e. 27 entries"):
        _task(two_langs)
    processor = spm.SentencePieceProcessor(model_file=str(two_langs / "sentencepiece.bpe.model"))
    pieces = [processor.id_to_piece(i) for i in range(3, processor.get_piece_size())]
    (two_langs / "dict.txt").write_text("".join(f"{p} 1\n" for p in pieces), encoding="utf-8")
    assert len(_task(two_langs).dictionary) == 30 + 1 + 1  # + <mask>


def _fairseq_setup(data, *extra):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(data), "--task", "xlmr_mlm", "--criterion", "xlmr_mlm", "--arch", "roberta", "--cpu",
        "--encoder-layers", "1", "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32",
        "--encoder-attention-heads", "2", "--max-positions", "32", "--tokens-per-sample", "32", *extra,
    ])
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    return task, task.build_model(cfg.model), task.build_criterion(cfg.criterion)


def test_tokens_per_sample_above_max_positions_fails_in_build_model(two_langs):
    with pytest.raises(ValueError, match=r"`task.tokens_per_sample` must not exceed the model's max_positions, "
                                         r"got 64 > 32"):
        _fairseq_setup(two_langs, "--tokens-per-sample", "64")


def test_criterion_splits_the_loss_by_language(two_langs):
    task, model, criterion = _fairseq_setup(two_langs, "--seed", "3")
    assert task.cfg.seed == 3 and task.cfg.train_subset == "train"  # interpolated from common/dataset
    task.load_dataset("valid")
    batch = _batch(task, "valid", indices=range(len(task.datasets["valid"])))
    model.eval()
    loss, sample_size, log = criterion(model, batch)
    pad = task.dictionary.pad()
    logits = model(**batch["net_input"])[0]  # (batch, seq_len, vocab), every position
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["target"], ignore_index=pad,
                                                  reduction="none")
    for i, lang in enumerate(task.languages):
        rows = batch["net_input"]["lang_id"] == i
        assert log[f"loss_{lang}"].item() == pytest.approx(per_token[rows].sum().item(), rel=1e-4)
        assert log[f"sample_size_{lang}"] == batch["target"][rows].ne(pad).sum()
    assert loss.item() == pytest.approx(log["loss_en"].item() + log["loss_sw"].item(), rel=1e-5)
    assert sample_size == log["sample_size_en"] + log["sample_size_sw"] == batch["target"].ne(pad).sum()

    with metrics.aggregate() as agg:
        XlmrMlmCriterion.reduce_metrics([log])
    stats = agg.get_smoothed_values()
    expected = log["loss_sw"].item() / log["sample_size_sw"].item() / math.log(2)
    assert stats["loss_sw"] == pytest.approx(expected, abs=1e-3)
    assert stats["ppl_sw"] == pytest.approx(2 ** stats["loss_sw"], rel=1e-2)
    assert {"loss", "ppl", "loss_en", "ppl_en"} <= set(stats)


def test_criterion_survives_a_batch_without_masked_tokens(two_langs):
    task, model, criterion = _fairseq_setup(two_langs)
    task.load_dataset("valid")
    batch = _batch(task, "valid", indices=[0, 1])
    batch["target"].fill_(task.dictionary.pad())
    loss, sample_size, log = criterion(model, batch)
    loss.backward()
    assert loss.item() == 0 and sample_size == 0 and log["sample_size_en"] == 0
    with metrics.aggregate() as agg:
        XlmrMlmCriterion.reduce_metrics([log])
    assert "loss" not in agg.get_smoothed_values()  # nothing predicted, nothing reported


def test_missing_valid_split_stops_fairseq_train_before_training(tmp_path):
    from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, tiny_model_args

    data = tmp_path / "bin"
    make_tiny_data_bin(data, ["en", "sw"], {"en": 40, "sw": 20}, valid_sentences=None)
    validating = [arg for arg in tiny_model_args() if arg != "--disable-validation"]
    with pytest.raises(ValueError) as err:
        fairseq_train([data, "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm", *validating,
                       "--max-update", "2", "--save-dir", tmp_path / "checkpoints"])
    message = str(err.value)
    assert message == (f"split 'valid' is missing: no language in `task.data` {str(data)!r} has "
                       "<lang>/valid.{bin,idx}. Re-run `xlmr binarize` with --valid-lines N (N held-out sentences "
                       "per language), or give fairseq-train --disable-validation.")
    assert not list(tmp_path.glob("checkpoints/*.pt"))  # stopped before the first update


def test_a_language_without_valid_split_is_left_out_of_valid(two_langs, caplog):
    for ext in ("bin", "idx"):
        (two_langs / "sw" / f"valid.{ext}").unlink()
    task = _task(two_langs)
    with caplog.at_level(logging.WARNING, logger=TASK_LOGGER):
        task.load_dataset("valid")
    assert "no valid data for language sw" in caplog.text
    assert set(_sampling_dataset(task, "valid").lang_ids.tolist()) == {task.languages.index("en")}
