"""Readers of the XTREME fine-tuning formats, on tiny inline samples written as the distributions write them."""

import json

import pytest

from fairseq_xlmr.data import readers
from fairseq_xlmr.finetune.split_files import discover_languages, is_per_language, language_file, parse_languages

XNLI_HEADER = ("language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre")


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_xnli_dev_tsv_keeps_each_rows_language(tmp_path):
    path = _write(tmp_path / "xnli.dev.tsv", XNLI_HEADER + "\n"
                  "en\tneutral\t-\t-\t-\t-\tA man \"sleeps\".\tHe is tired.\t1\t1\tfiction\n"
                  "de\tcontradiction\t-\t-\t-\t-\tEin Mann schläft.\tEr rennt.\t1\t2\tfiction\n")
    examples = readers.read_xnli_tsv(path)
    assert examples == [
        readers.SentenceExample('A man "sleeps".', "He is tired.", "neutral", "en"),  # quotes kept verbatim
        readers.SentenceExample("Ein Mann schläft.", "Er rennt.", "contradiction", "de"),
    ]


def test_xnli_mt_train_maps_contradictory_and_multinli_skips_no_consensus(tmp_path):
    mt = _write(tmp_path / "multinli.train.fr.tsv", "premise\thypo\tlabel\nIl pleut.\tIl fait beau.\tcontradictory\n")
    assert readers.read_xnli_tsv(mt, "fr") == [readers.SentenceExample("Il pleut.", "Il fait beau.", "contradiction", "fr")]
    mnli = _write(tmp_path / "multinli_1.0_train.txt",
                  "gold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\t"
                  "sentence1\tsentence2\tpromptID\tpairID\tgenre\n"
                  "entailment\t-\t-\t-\t-\tA dog runs.\tAn animal moves.\t1\t1\tgov\n"
                  "-\t-\t-\t-\t-\tUnclear.\tUnclear too.\t2\t2\tgov\n")
    assert [e.label for e in readers.read_xnli_tsv(mnli, "en")] == ["entailment"]
    with pytest.raises(ValueError, match="names no language"):
        readers.read_xnli_tsv(mnli)


def test_xnli_jsonl_both_key_sets(tmp_path):
    path = _write(tmp_path / "xnli.jsonl",
                  json.dumps({"premise": "P", "hypothesis": "H", "label": 2, "language": "sw"}) + "\n\n" +
                  json.dumps({"sentence1": "A", "sentence2": "B", "gold_label": "contradictory"}) + "\n")
    assert readers.read_xnli_jsonl(path, "en") == [readers.SentenceExample("P", "H", "2", "sw"),
                                                   readers.SentenceExample("A", "B", "contradiction", "en")]


def test_pawsx_skips_rows_without_both_sentences(tmp_path):
    path = _write(tmp_path / "translated_train.tsv",
                  "id\tsentence1\tsentence2\tlabel\n1\tDer Hund.\tDer Hund bellt.\t0\n2\t\tNur einer.\t1\n3\tKurz.\n")
    assert readers.read_pawsx_tsv(path, "de") == [readers.SentenceExample("Der Hund.", "Der Hund bellt.", "0", "de")]


def test_generic_tsv_and_jsonl_columns_named_by_flags(tmp_path):
    tsv = _write(tmp_path / "train.tsv", "lang\ttext\ty\nen\tgood film\tpos\nfr\tmauvais\tneg\n")
    assert readers.read_labelled_tsv(tsv, "text", "y", language_column="lang") == [
        readers.SentenceExample("good film", None, "pos", "en"), readers.SentenceExample("mauvais", None, "neg", "fr")]
    with pytest.raises(ValueError, match=r"no column \['label'\]"):
        readers.read_labelled_tsv(tsv, "text", "label", language="en")
    jsonl = _write(tmp_path / "train.jsonl", json.dumps({"a": "x", "b": "y", "label": 1}) + "\n")
    assert readers.read_labelled_jsonl(jsonl, "a", "label", text_b_column="b", language="de") == [
        readers.SentenceExample("x", "y", "1", "de")]


def test_xnli_15way_columns_are_aligned(tmp_path):
    path = _write(tmp_path / "xnli.15way.orig.tsv", "en\tde\tzh\nHello.\tHallo.\t你好。\nBye.\tTschüss.\t再见。\n")
    assert readers.read_xnli_15way(path) == {"en": ["Hello.", "Bye."], "de": ["Hallo.", "Tschüss."],
                                             "zh": ["你好。", "再见。"]}


def test_conll2002_latin1_docstart_and_last_column(tmp_path):
    text = ("-DOCSTART- -DOCSTART- O\nEl DA O\nseñor NC O\nGarcía NC B-PER\n\n"
            "Madrid NC B-LOC\n\n\n-DOCSTART- -DOCSTART- O\n\nEspaña NC B-LOC\n")
    path = _write(tmp_path / "esp.train", text, encoding="latin-1")
    sentences = readers.read_conll(path, "es")
    assert [s.words for s in sentences] == [("El", "señor", "García"), ("Madrid",), ("España",)]
    assert [s.labels for s in sentences] == [("O", "O", "B-PER"), ("B-LOC",), ("B-LOC",)]
    assert readers.read_conll(path, "es", label_column=1)[0].labels == ("DA", "NC", "NC")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        readers.read_conll(path, "es", encoding="utf-8")


def test_conll2003_four_columns_and_crlf(tmp_path):
    path = _write(tmp_path / "eng.testa", "-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP I-ORG\r\nrejects VBZ B-VP O\r\n")
    [sentence] = readers.read_conll(path, "en")
    assert sentence == readers.TaggedSentence(("EU", "rejects"), ("I-ORG", "O"), "en")


def test_wikiann_prefix_names_the_language_and_colons_stay_in_words(tmp_path):
    path = _write(tmp_path / "dev", "de:Berlin\tB-LOC\nde:http://x.de\tO\n\nde:Paris\tB-LOC\n")
    sentences = readers.read_wikiann(path)
    assert sentences == [readers.TaggedSentence(("Berlin", "http://x.de"), ("B-LOC", "O"), "de"),
                         readers.TaggedSentence(("Paris",), ("B-LOC",), "de")]


def test_conllu_upos_skips_comments_multiword_and_empty_nodes(tmp_path):
    rows = [
        "# text = Vámonos al mar.",
        "1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_",
        "1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_",
        "2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_",
        "3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_",
        "3\ta\ta\tADP\t_\t_\t5\tcase\t_\t_",
        "4\tel\tel\tDET\t_\t_\t5\tdet\t_\t_",
        "4.1\tido\tir\tVERB\t_\t_\t_\t_\t1:conj\t_",
        "5\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\t_",
        "6\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_",
    ]
    path = _write(tmp_path / "es-ud-dev.conllu", "\n".join(rows) + "\n\n")
    [sentence] = readers.read_conllu(path, "es")
    assert sentence.words == ("Vamos", "nos", "a", "el", "mar", ".")
    assert sentence.labels == ("VERB", "PRON", "ADP", "DET", "NOUN", "PUNCT")


def test_split_file_patterns(tmp_path):
    for rel in ("en/train.tsv", "de/translated_train.tsv", "fr/translated_train.tsv", "fr/train.tsv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    pattern = "{lang}/train.tsv,{lang}/translated_train.tsv"
    assert is_per_language(pattern, "train_file")
    assert discover_languages(tmp_path, pattern) == ["de", "en", "fr"]
    assert language_file(tmp_path, pattern, "fr") == tmp_path / "fr" / "train.tsv"  # first alternative wins
    assert language_file(tmp_path, pattern, "de") == tmp_path / "de" / "translated_train.tsv"
    assert language_file(tmp_path, pattern, "sw") is None
    assert not is_per_language("xnli.dev.tsv", "valid_file")
    with pytest.raises(ValueError, match="mixes patterns"):
        is_per_language("{lang}.tsv,all.tsv", "train_file")
    assert parse_languages(" en, de ,", "train_languages") == ["en", "de"]
    with pytest.raises(ValueError, match=r"`task.train_languages` lists en more than once: ' en, de ,en'"):
        parse_languages(" en, de ,en", "train_languages")
    assert parse_languages("all", "train_languages") is None
