"""`xlmr train-spm`: α-sampling, the XLM-R dict.txt id layout, and its errors."""

import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary

from fairseq_xlmr import cli
from fairseq_xlmr.data.language_sampling import sampling_probs
from fairseq_xlmr.preprocess.spm import (
    check_spm_matches_dict,
    count_lines,
    sample_line_indices,
    sample_sizes,
    train_spm,
)
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm

UNBALANCED = {"en": 400, "de": 200, "ru": 100, "zh": 50}


def test_sample_sizes_round_q_times_total():
    p = np.array([0.9, 0.1])
    q = p**0.3 / (p**0.3).sum()  # XLM-R §3.1
    sizes = sample_sizes([900, 100], alpha=0.3, total=1000)
    assert sizes == [round(q[0] * 1000), round(q[1] * 1000)] == [659, 341]
    assert sample_sizes([900, 100], alpha=1.0, total=1000) == [900, 100]
    assert sample_sizes([10**6, 1], alpha=0.3, total=100) == [98, 2]  # every language gets >= 1 line


def test_sample_line_indices_upsamples_every_line_and_downsamples_without_repeats():
    rng = np.random.default_rng(0)
    up = sample_line_indices(10, 25, rng)
    assert len(up) == 25 and np.bincount(up, minlength=10).min() == 2  # 2 full copies + 5 more
    down = sample_line_indices(100, 30, rng)
    assert len(down) == 30 and len(set(down.tolist())) == 30 and (np.diff(down) > 0).all()


def test_dict_gives_fairseq_id_equal_to_spm_id_plus_one(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", lines=UNBALANCED)
    paths = make_tiny_spm(tmp_path / "spm", corpus, vocab_size=150)
    sp = spm.SentencePieceProcessor(model_file=str(paths["spm"]))
    d = Dictionary.load(str(paths["dict"]))
    assert sp.get_piece_size() == 150
    assert len(d) == sp.get_piece_size() + 1  # + <s> <pad> </s> <unk>, - SPM's 3 specials
    assert (d.bos(), d.pad(), d.eos(), d.unk()) == (0, 1, 2, 3)
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id(), sp.pad_id()) == (0, 1, 2, -1)
    for spm_id in range(3, sp.get_piece_size()):
        piece = sp.id_to_piece(spm_id)
        assert d.index(piece) == spm_id + 1, piece
    # Counts are real frequencies in the sample: the word-boundary piece is the most frequent one.
    assert d.count[d.index("▁")] == max(d.count[4:]) > 100
    check_spm_matches_dict(paths["spm"], paths["dict"])


def test_summary_reports_alpha_sampled_lines(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", lines=UNBALANCED)
    summary = train_spm(corpus, tmp_path / "spm", vocab_size=150, alpha=0.3, sample_sentences=600,
                        num_threads=1, quiet=True)
    assert summary.languages == ["de", "en", "ru", "zh"]
    assert summary.line_counts == [200, 400, 100, 50]
    q = sampling_probs([200, 400, 100, 50], 0.3)
    assert summary.sampled == [round(qi * 600) for qi in q]
    assert summary.sampled[3] > 50  # zh (50 lines) is up-sampled
    np.testing.assert_allclose(summary.probs, np.array([200, 400, 100, 50]) / 750)


def test_same_seed_same_model(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", lines=UNBALANCED)
    a = make_tiny_spm(tmp_path / "a", corpus, seed=3)
    b = make_tiny_spm(tmp_path / "b", corpus, seed=3)
    assert a["spm"].read_bytes() == b["spm"].read_bytes()
    assert a["dict"].read_text() == b["dict"].read_text()


def test_empty_and_invalid_lines_are_skipped_not_fatal(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", languages=("en", "ru"), lines=100)
    with open(corpus / "en.txt", "ab") as f:
        f.write(b"\n   \n\xff\xfe broken\n")
    assert count_lines(corpus / "en.txt") == 103
    summary = train_spm(corpus, tmp_path / "spm", vocab_size=100, alpha=1.0, num_threads=1, quiet=True)
    # alpha=1, total = all lines: every line of en is drawn once, 3 are dropped.
    assert summary.sampled[0] + summary.skipped[0] == 103 and summary.skipped[0] == 3


def test_vocab_too_large_is_a_clear_error(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", lines=50)
    with pytest.raises(ValueError, match=r"--vocab-size 5000 is too large .* pass --vocab-size \d+ or less"):
        train_spm(corpus, tmp_path / "spm", vocab_size=5000, num_threads=1, quiet=True)
    with pytest.raises(ValueError, match=r"--vocab-size 20 is too small: this data needs at least \d+"):
        train_spm(corpus, tmp_path / "spm", vocab_size=20, num_threads=1, quiet=True)
    assert not (tmp_path / "spm" / "dict.txt").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 1.5}, r"--alpha must be in \(0, 1\], got 1.5"),
    ({"languages": ["en", "xx"]}, r"'xx' but .*xx.txt' does not exist"),
    ({"corpus_dir": "missing"}, r"--corpus-dir .*missing' is not a directory"),
])
def test_bad_options_raise_before_work(tmp_path, kwargs, message):
    corpus = make_tiny_corpus(tmp_path / "corpus", languages=("en",), lines=20)
    kwargs = {"corpus_dir": corpus, "out_dir": tmp_path / "spm", "vocab_size": 50, "quiet": True, **kwargs}
    if kwargs["corpus_dir"] == "missing":
        kwargs["corpus_dir"] = tmp_path / "missing"
    with pytest.raises(ValueError, match=message):
        train_spm(**kwargs)


def test_empty_language_file_is_rejected(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", languages=("en",), lines=20)
    (corpus / "de.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"de.txt' \(language 'de'\) is empty"):
        train_spm(corpus, tmp_path / "spm", vocab_size=50, quiet=True)


def test_check_spm_matches_dict_names_the_mismatch(tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", lines=100)
    paths = make_tiny_spm(tmp_path / "spm", corpus, vocab_size=150)
    lines = paths["dict"].read_text(encoding="utf-8").splitlines(keepends=True)
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("".join([lines[1], lines[0]] + lines[2:]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1 is .* but SPM id 3 .* is"):
        check_spm_matches_dict(paths["spm"], swapped)
    short = tmp_path / "short.txt"
    short.write_text("".join(lines[:-1]), encoding="utf-8")
    with pytest.raises(ValueError, match=r"has 146 entries but .* has 150 pieces"):
        check_spm_matches_dict(paths["spm"], short)


def test_cli_entry_point_writes_model_and_dict(tmp_path, capsys):
    corpus = make_tiny_corpus(tmp_path / "corpus", languages=("en", "zh"), lines=80)
    out = tmp_path / "spm"
    rc = cli.main(["train-spm", "--corpus-dir", str(corpus), "--out-dir", str(out), "--vocab-size", "90",
                   "--num-threads", "1", "--alpha", "0.5"])
    assert rc == 0
    sp = spm.SentencePieceProcessor(model_file=str(out / "sentencepiece.bpe.model"))
    assert sp.get_piece_size() == 90
    assert len(Dictionary.load(str(out / "dict.txt"))) == 91
    printed = capsys.readouterr().out
    assert "vocab size 90 pieces" in printed and "zh" in printed
    assert sorted(p.name for p in out.iterdir()) == ["dict.txt", "sentencepiece.bpe.model"]  # no temp left
