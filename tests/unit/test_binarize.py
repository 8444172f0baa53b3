"""`xlmr binarize`: same ids as stock fairseq-preprocess, worker-count invariance, splits, errors."""

import filecmp
import logging

import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary, data_utils

from fairseq_xlmr import cli
from fairseq_xlmr.preprocess import binarize as binarize_module
from fairseq_xlmr.preprocess.binarize import (
    assign_splits,
    binarize,
    default_valid_lines,
    find_line_offsets,
    is_output_file,
    shard_ids,
    split_lines,
)
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm

LANGS = ("en", "de", "ru", "zh")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    corpus = make_tiny_corpus(root / "corpus", LANGS, lines=150)
    paths = make_tiny_spm(root / "spm", corpus, vocab_size=150)
    sp = spm.SentencePieceProcessor(model_file=str(paths["spm"]))
    return {"corpus": corpus, "spm": paths["spm"], "dict_path": paths["dict"], "sp": sp,
            "dict": Dictionary.load(str(paths["dict"]))}


def read_dataset(prefix, dictionary):
    dataset = data_utils.load_indexed_dataset(str(prefix), dictionary)
    assert dataset is not None, prefix
    return [dataset[i].tolist() for i in range(len(dataset))]


def expected_ids(tiny, text):
    """What fairseq's Dictionary.encode_line gives for the SentencePiece pieces of `text`."""
    pieces = " ".join(tiny["sp"].encode(text, out_type=str))
    return tiny["dict"].encode_line(pieces, add_if_not_exist=False, append_eos=True).tolist()


def write_messy_file(corpus, tiny):
    """en.txt with known empty lines, invalid UTF-8, duplicates and a CRLF line; returns the good lines."""
    good = (corpus / "en.txt").read_text(encoding="utf-8").splitlines()[:60]
    lines = []
    for i, line in enumerate(good):
        lines.append(line.encode("utf-8"))
        if i % 10 == 0:
            lines += [b"", b"   ", b"\xff\xfebad " + line.encode("utf-8")]  # 2 empty + 1 invalid
    lines += [good[0].encode("utf-8"), good[1].encode("utf-8") + b"\r", b"  " + good[2].encode("utf-8")]
    (corpus / "en.txt").write_bytes(b"\n".join(lines) + b"\n")
    return good


def test_ids_and_files_match_stock_fairseq_preprocess(tiny, tmp_path):
    from bench.binarize import run_fairseq_preprocess, spm_encode_file

    logging.disable(logging.INFO)
    try:
        binarize(tiny["corpus"], tiny["spm"], tmp_path / "ours", languages=["en", "zh"], quiet=True)
        for lang in ("en", "zh"):
            encoded = tmp_path / f"{lang}.spm.txt"
            spm_encode_file(tiny["spm"], tiny["corpus"] / f"{lang}.txt", encoded)
            theirs = run_fairseq_preprocess(encoded, tiny["dict_path"], tmp_path / "theirs" / lang, workers=1)
            ours = tmp_path / "ours" / lang / "train"
            our_ids, their_ids = read_dataset(ours, tiny["dict"]), read_dataset(theirs, tiny["dict"])
            assert len(our_ids) == 150 and our_ids == their_ids
            assert all(ids[-1] == tiny["dict"].eos() and ids[0] != tiny["dict"].bos() for ids in our_ids)
            for ext in ("bin", "idx"):
                assert filecmp.cmp(f"{ours}.{ext}", f"{theirs}.{ext}", shallow=False), (lang, ext)
    finally:
        logging.disable(logging.NOTSET)
    assert (tmp_path / "ours" / "dict.txt").read_bytes() == tiny["dict_path"].read_bytes()


def test_output_is_identical_for_any_worker_count(tiny, tmp_path, monkeypatch):
    corpus = make_tiny_corpus(tmp_path / "corpus", LANGS, lines=150)
    write_messy_file(corpus, tiny)
    options = dict(valid_lines=5, test_lines=5, dedup=True, num_shards=2, quiet=True)
    binarize(corpus, tiny["spm"], tmp_path / "w1", workers=1, **options)
    monkeypatch.setattr(binarize_module, "CHUNK_BYTES", 700)  # many chunks per language, cut mid-file
    binarize(corpus, tiny["spm"], tmp_path / "w2", workers=2, **options)
    files1 = sorted(p.relative_to(tmp_path / "w1") for p in (tmp_path / "w1").rglob("*") if p.is_file())
    files2 = sorted(p.relative_to(tmp_path / "w2") for p in (tmp_path / "w2").rglob("*") if p.is_file())
    assert files1 == files2 and len(files1) == 2 * 4 * 6 + 3  # shards × langs × (3 splits × 2) + dicts
    for rel in files1:
        assert filecmp.cmp(tmp_path / "w1" / rel, tmp_path / "w2" / rel, shallow=False), rel


def test_empty_invalid_and_crlf_lines_are_counted_and_skipped(tiny, tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", ("en",), lines=150)
    good = write_messy_file(corpus, tiny)
    (summary,) = binarize(corpus, tiny["spm"], tmp_path / "out", workers=2, quiet=True)
    assert (summary.lines, summary.empty, summary.invalid, summary.duplicates) == (60 + 18 + 3, 12, 6, 0)
    ids = read_dataset(tmp_path / "out" / "en" / "train", tiny["dict"])
    # The CRLF line and the indented copy encode like the originals: SentencePiece strips the spaces.
    assert ids == [expected_ids(tiny, line) for line in good + good[:3]]
    assert summary.sentences["train"] == 63 and summary.tokens == sum(map(len, ids))


def test_dedup_removes_exact_duplicates_keeping_the_first(tiny, tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", ("en",), lines=150)
    good = write_messy_file(corpus, tiny)
    (summary,) = binarize(corpus, tiny["spm"], tmp_path / "out", dedup=True, quiet=True)
    assert summary.duplicates == 3 and summary.sentences["train"] == 60
    train = read_dataset(tmp_path / "out" / "en" / "train", tiny["dict"])
    assert train == [expected_ids(tiny, x) for x in good]


def test_valid_and_test_are_disjoint_from_train_and_deterministic(tiny, tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", ("en", "zh"), lines=150)
    good = write_messy_file(corpus, tiny)  # en has 3 duplicated sentences and no --dedup
    summaries = binarize(corpus, tiny["spm"], tmp_path / "out", valid_lines=10, test_lines=7, quiet=True)
    for summary in summaries:
        splits = {s: read_dataset(tmp_path / "out" / summary.lang / s, tiny["dict"])
                  for s in ("train", "valid", "test")}
        sets = {s: {tuple(x) for x in ids} for s, ids in splits.items()}
        assert (len(sets["valid"]), len(sets["test"])) == (10, 7)  # distinct sentences
        assert not sets["train"] & sets["valid"] and not sets["train"] & sets["test"]
        assert not sets["valid"] & sets["test"]
        assert sum(map(len, splits.values())) == summary.kept == (63 if summary.lang == "en" else 150)
    en_all = [expected_ids(tiny, x) for x in good + good[:3]]
    en_train = read_dataset(tmp_path / "out" / "en" / "train", tiny["dict"])
    assert en_train == [x for x in en_all if x in en_train]  # train keeps file order
    binarize(corpus, tiny["spm"], tmp_path / "again", valid_lines=10, test_lines=7, quiet=True)
    assert filecmp.cmp(tmp_path / "out/en/valid.bin", tmp_path / "again/en/valid.bin", shallow=False)


def test_shards_split_train_in_order_and_copy_held_out_sets(tiny, tmp_path):
    binarize(tiny["corpus"], tiny["spm"], tmp_path / "out", languages=["ru"], valid_lines=4, num_shards=3,
             quiet=True)
    shards = [read_dataset(tmp_path / "out" / f"shard{k}" / "ru" / "train", tiny["dict"]) for k in range(3)]
    assert [len(s) for s in shards] == [49, 49, 48]
    binarize(tiny["corpus"], tiny["spm"], tmp_path / "flat", languages=["ru"], valid_lines=4, quiet=True)
    assert shards[0] + shards[1] + shards[2] == read_dataset(tmp_path / "flat" / "ru" / "train", tiny["dict"])
    valid = [read_dataset(tmp_path / "out" / f"shard{k}" / "ru" / "valid", tiny["dict"]) for k in range(3)]
    assert valid[0] == valid[1] == valid[2] and len(valid[0]) == 4
    assert all((tmp_path / "out" / f"shard{k}" / "dict.txt").is_file() for k in range(3))
    assert not (tmp_path / "out" / "shard0" / "ru" / "test.bin").exists()  # --test-lines 0


def test_pure_helpers(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"aaaa\nbb\n\xff\nccccccc\nd")
    offsets = find_line_offsets(path, 4)
    data = path.read_bytes()
    assert offsets[0] == 0 and offsets[-1] == len(data) and offsets == sorted(offsets)
    assert all(o == 0 or data[o - 1:o] == b"\n" for o in offsets[:-1])
    assert split_lines(b"a\r\nb\n\xffx\n\n") == (["a", "b", ""], 1)
    assert split_lines(b"") == ([], 0)
    hashes = np.array([5, 3, 9, 3, 1, 7], dtype=np.uint64)
    codes = assign_splits(hashes, valid_lines=1, test_lines=1, dedup=True)
    assert codes.tolist() == [0, 2, 0, -1, 1, 0]  # hash 1 -> valid, hash 3 -> test, second 3 dropped
    assert shard_ids(5, 2).tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("change, message", [
    ({"corpus_dir": "nowhere"}, r"--corpus-dir .*nowhere' is not a directory"),
    ({"languages": ["en", "fr"]}, r"--languages names 'fr' but .*fr.txt' does not exist"),
    ({"workers": 0}, r"--workers must be >= 1, got 0"),
    ({"valid_lines": 100, "test_lines": 60}, r"'de' has 150 lines, not more than --valid-lines 100"),
    ({"swap_dict": True}, r"line 1 is .* but SPM id 3"),
])
def test_bad_input_fails_before_work(tiny, tmp_path, change, message):
    kwargs = {"corpus_dir": tiny["corpus"], "spm_model": tiny["spm"], "dest_dir": tmp_path / "out",
              "quiet": True}
    if change.pop("swap_dict", False):
        lines = tiny["dict"].symbols[4:]
        swapped = tmp_path / "dict.txt"
        swapped.write_text("".join(f"{p} 1\n" for p in [lines[1], lines[0]] + lines[2:]), encoding="utf-8")
        kwargs["dict_path"] = swapped
    if change.get("corpus_dir") == "nowhere":
        change["corpus_dir"] = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=message):
        binarize(**{**kwargs, **change})
    assert list(tmp_path.glob("out*")) == []


def test_empty_language_file_is_rejected(tiny, tmp_path):
    corpus = make_tiny_corpus(tmp_path / "corpus", ("en",), lines=10)
    (corpus / "de.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\(language 'de'\) is empty"):
        binarize(corpus, tiny["spm"], tmp_path / "out", quiet=True)


def test_existing_output_is_kept_unless_overwrite_and_failures_leave_nothing(tiny, tmp_path, monkeypatch):
    dest = tmp_path / "out"
    binarize(tiny["corpus"], tiny["spm"], dest, languages=["zh"], quiet=True)
    before = (dest / "zh" / "train.bin").read_bytes()
    with pytest.raises(ValueError, match=r"already holds data of `xlmr binarize` \(3 files, e.g. dict.txt\); pass "
                                         r"--overwrite"):
        binarize(tiny["corpus"], tiny["spm"], dest, languages=["en"], quiet=True)

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(binarize_module, "_write_language", crash)
    with pytest.raises(RuntimeError, match="killed"):
        binarize(tiny["corpus"], tiny["spm"], dest, languages=["en"], overwrite=True, quiet=True)
    assert (dest / "zh" / "train.bin").read_bytes() == before and not (dest / "en").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left behind
    monkeypatch.undo()
    binarize(tiny["corpus"], tiny["spm"], dest, languages=["en"], overwrite=True, quiet=True)
    assert sorted(p.name for p in dest.iterdir()) == ["dict.txt", "en"]


def test_cli_entry_point(tiny, tmp_path, capsys):
    rc = cli.main(["binarize", "--corpus-dir", str(tiny["corpus"]), "--spm-model", str(tiny["spm"]),
                   "--dest-dir", str(tmp_path / "out"), "--languages", "de,zh", "--workers", "2",
                   "--valid-lines", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "lines/s" in printed and "tokens/s" in printed
    assert len(read_dataset(tmp_path / "out" / "zh" / "valid", tiny["dict"])) == 3
    assert len(read_dataset(tmp_path / "out" / "de" / "train", tiny["dict"])) == 147


def test_cli_holds_out_a_valid_split_by_default(tiny, tmp_path):
    """Without --valid-lines every language gets a valid split, so fairseq-train finds `valid`."""
    corpus = make_tiny_corpus(tmp_path / "corpus", ("en", "de"), lines={"en": 150, "de": 1200})
    argv = ["binarize", "--corpus-dir", str(corpus), "--spm-model", str(tiny["spm"]), "--workers", "1"]
    assert cli.main([*argv, "--dest-dir", str(tmp_path / "out")]) == 0
    for lang, held_out in (("en", 10), ("de", 12)):  # at least 10, else 1% of the lines
        valid = read_dataset(tmp_path / "out" / lang / "valid", tiny["dict"])
        train = read_dataset(tmp_path / "out" / lang / "train", tiny["dict"])
        assert len({tuple(x) for x in valid}) == held_out and not {tuple(x) for x in valid} & {tuple(x) for x in train}
    assert (default_valid_lines(5), default_valid_lines(2_500), default_valid_lines(10**7)) == (10, 25, 500)
    (corpus / "de.txt").write_text("".join(f"Satz {i}.\n" for i in range(9)), encoding="utf-8")
    with pytest.raises(ValueError, match=r"language 'de' has 9 lines, not more than the default --valid-lines 10 "
                                         r"\(1% of the lines, at least 10, at most 500\) \+ --test-lines 0; "
                                         r"add text, or pass a smaller --valid-lines \(0 writes no valid split: then "
                                         r"train with --disable-validation\)"):
        cli.run([*argv, "--dest-dir", str(tmp_path / "small")])
    assert not (tmp_path / "small").exists()
    assert cli.main([*argv, "--dest-dir", str(tmp_path / "small"), "--valid-lines", "0"]) == 0
    assert not (tmp_path / "small" / "de" / "valid.idx").exists()


def test_parallel_cli_holds_out_a_valid_split_by_default(tiny, tmp_path):
    para = tmp_path / "para"
    para.mkdir()
    en = (tiny["corpus"] / "en.txt").read_text(encoding="utf-8").splitlines()[:40]
    de = (tiny["corpus"] / "de.txt").read_text(encoding="utf-8").splitlines()[:40]
    (para / "en-de.en").write_text("\n".join(en) + "\n", encoding="utf-8")
    (para / "en-de.de").write_text("\n".join(de) + "\n", encoding="utf-8")
    assert cli.main(["binarize", "--para-dir", str(para), "--spm-model", str(tiny["spm"]),
                     "--dest-dir", str(tmp_path / "bin")]) == 0
    for lang in ("en", "de"):
        assert len(read_dataset(tmp_path / "bin" / "en-de" / f"valid.{lang}", tiny["dict"])) >= 10


def test_overwrite_replaces_only_what_binarize_writes(tiny, tmp_path):
    dest = tmp_path / "out"
    binarize(tiny["corpus"], tiny["spm"], dest, languages=["en", "zh"], valid_lines=5, quiet=True)
    foreign = {"README.md": "how this data was made\n", "notes/run.log": "log\n", "en/stats.json": "{}\n",
               "shard.txt": "not a shard dir\n"}
    for rel, text in foreign.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    (dest / "empty").mkdir()
    old_dict = (dest / "dict.txt").read_bytes()
    (dest / "dict.txt").write_text("stale\n")

    binarize(tiny["corpus"], tiny["spm"], dest, languages=["de"], overwrite=True, quiet=True)
    for rel, text in foreign.items():
        assert (dest / rel).read_text() == text, rel  # kept, contents unchanged
    assert (dest / "empty").is_dir()
    # Stale outputs of the first run are gone: its languages, its valid split, its dict.txt.
    assert not (dest / "zh").exists() and sorted(p.name for p in (dest / "en").iterdir()) == ["stats.json"]
    assert (dest / "dict.txt").read_bytes() == old_dict
    assert len(read_dataset(dest / "de" / "train", tiny["dict"])) == 150 and not (dest / "de" / "valid.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or old dir left behind

    # A directory holding only other files needs no --overwrite, and keeps them.
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "README.md").write_text("mine\n")
    binarize(tiny["corpus"], tiny["spm"], tmp_path / "fresh", languages=["ru"], quiet=True)
    assert (tmp_path / "fresh" / "README.md").read_text() == "mine\n"
    assert (tmp_path / "fresh" / "ru" / "train.idx").is_file()
    assert all(map(is_output_file, ["dict.txt", "shard3/dict.txt", "shard3/en/valid.idx", "en-de/test.de.bin"]))
    assert not any(map(is_output_file, ["README.md", "en/dict.txt", "en/train.txt", "a/b/train.bin"]))
