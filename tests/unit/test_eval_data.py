"""`xlmr fetch-eval-data` conversions on tiny inline samples (no network): tagsets -> the 12 universal
tags, pattern's `word/TAG` lines and polarity csv files -> the CoNLL-U and tsv files the fine-tuning
readers take, and the splits."""

from collections import Counter

import pytest

from fairseq_xlmr.data.readers import read_conllu, read_labelled_tsv
from fairseq_xlmr.preprocess import eval_data as ed

OANC = "Has/VBZ the/DT Internet/NN abandoned/VBD its/PRP$ role/NN ?/.\nThe/DT net/NN 's/POS story/VBG|NN ./.\n"
WSJ = "Pierre/NNP Vinken/NNP ,/, 61/CD years/NNS old/JJ ./.\nMr./NNP Vinken/NNP is/VBZ chairman/NN ./.\n"
TIGER = 'Texaner/NN gibt/VVFIN nur/ADV vage/ADJA Auskunft/NN &slash;/( darüber/PROAV "/"\n'
WIKICORPUS = "El/DA sedentarismo/NCS es/VSI la/DA carencia/NCS de/SP 2003/Z ,/Fc se/P0 no/RN ./Fp\n"
WACKY = "L'/DT armonium/NN è/VB uno/DT strumento/NN ;/FC =/X può/MD 83/858 ./.\n"
TWNC = ("hebben/V(hulp,ott,1of2of3,mv) nu/Adv(gew,aanw) veel/Num(hoofd,onbep,attr,stell,onverv) "
        "Ross/N(eigen,ev,neut)12 Perot/N(eigen,ev,neut)22 ,/Punc(komma) want/Conj(neven) ze/Pron(per,3,evofmv,nom)\n")
TURKISH = ("# sent_id = 1\n1\tKemerlerini\tkemer\tNOUN\tNN\t_\t2\tdobj\t_\t_\n"
           "2\tkatıl\tkatıl\tVERB\tVB\t_\t0\troot\t_\t_\n3\tşak\tşak\tONOM\tOn\t_\t2\tx\t_\t_\n"
           "4\t.\t.\tPUNCT\t.\t_\t2\tp\t_\t_\n\n")


def test_every_table_maps_into_the_twelve_universal_tags():
    for table in (ed.PTB, ed.STTS, ed.PAROLE_CATEGORY, ed.WOTAN_CATEGORY, ed.UPOS):
        assert set(table.values()) <= set(ed.UNIVERSAL_TAGS)


@pytest.mark.parametrize("mapper, tag, expected", [
    (ed.map_ptb, "NNP", "NOUN"), (ed.map_ptb, "MD", "VERB"), (ed.map_ptb, "TO", "PRT"), (ed.map_ptb, "WDT", "DET"),
    (ed.map_ptb, "PRP$", "PRON"), (ed.map_ptb, "``", "."), (ed.map_ptb, "VBG|NN", "VERB"), (ed.map_ptb, "FC", "."),
    (ed.map_ptb, "858", None),
    (ed.map_stts, "APPRART", "ADP"), (ed.map_stts, "PROAV", "ADV"), (ed.map_stts, "PTKZU", "PRT"),
    (ed.map_stts, "VMFIN", "VERB"), (ed.map_stts, "ART", "DET"), (ed.map_stts, '"', "."), (ed.map_stts, "NN", "NOUN"),
    (ed.map_parole, "NCS", "NOUN"), (ed.map_parole, "NP", "NOUN"), (ed.map_parole, "DA", "DET"),
    (ed.map_parole, "P0", "PRON"), (ed.map_parole, "SP", "ADP"), (ed.map_parole, "Fpa", "."),
    (ed.map_parole, "Zu", "NUM"), (ed.map_parole, "W", "NUM"), (ed.map_parole, "RN", "ADV"), (ed.map_parole, "x", None),
    (ed.map_wotan, "N(eigen,ev,neut)22", "NOUN"), (ed.map_wotan, "Art(bep,zijdofmv,neut)", "DET"),
    (ed.map_wotan, "Prep(voor)", "ADP"), (ed.map_wotan, "Punc(komma)", "."), (ed.map_wotan, "Misc(vreemd)", "X"),
    (ed.map_wotan, "Foo(bar)", None),
    (ed.map_upos, "PROPN", "NOUN"), (ed.map_upos, "AUX", "VERB"), (ed.map_upos, "SCONJ", "CONJ"),
    (ed.map_upos, "PART", "PRT"), (ed.map_upos, "PUNCT", "."), (ed.map_upos, "ONOM", None),
])
def test_tag_mappings(mapper, tag, expected):
    assert mapper(tag) == expected


def test_tagged_lines_split_on_the_last_slash_and_unescape_slash_words():
    assert ed.parse_tagged_line("1/2/CD &slash;/( a/DT", "f:1") == (("1/2", "/", "a"), ("CD", "(", "DT"))
    with pytest.raises(ValueError, match=r"tagged-x.txt:2: token 'broken' is not word/TAG"):
        ed.read_tagged("ok/NN\nbroken ok/NN\n", "tagged-x.txt")


def test_unmapped_tags_become_x_and_are_counted():
    unmapped = Counter()
    sentences = ed.to_universal(ed.read_tagged(WACKY, "it"), "ptb", unmapped)
    assert sentences[0][1] == ("DET", "NOUN", "VERB", "DET", "NOUN", ".", "X", "VERB", "X", ".")
    assert unmapped == Counter({"858": 1})


def test_conllu_output_is_read_back_by_the_token_classification_reader(tmp_path):
    sentences = ed.to_universal(ed.read_tagged(TIGER, "de"), "stts", Counter())
    path = tmp_path / "test.conllu"
    path.write_text(ed.conllu_text(sentences), encoding="utf-8")
    (read,) = read_conllu(path, "de")
    assert read.words == ("Texaner", "gibt", "nur", "vage", "Auskunft", "/", "darüber", '"')
    assert read.labels == ("NOUN", "VERB", "ADV", "ADJ", "NOUN", ".", "ADV", ".")


def test_turkish_conllu_upos_is_mapped():
    unmapped = Counter()
    (sentence,) = ed.to_universal(ed.read_conllu_upos(TURKISH, "tr"), "upos", unmapped)
    assert sentence == (("Kemerlerini", "katıl", "şak", "."), ("NOUN", "VERB", "X", "."))
    assert unmapped == Counter({"ONOM": 1})


def test_polarity_csv_column_orders_labels_and_cleaning():
    label_first = '\ufeff"1","good, really\ngood &amp; fun"\n"-1","bad\tbook"\n'
    text_first = '"Une catastrophe.","-1"\n"J\'ai aimé ce livre.","1"\n'
    assert ed.read_polarity(label_first, "en", 1, 0) == [
        ("good, really good & fun", "positive"), ("bad book", "negative")]
    assert ed.read_polarity(text_first, "fr", 0, 1) == [
        ("Une catastrophe.", "negative"), ("J'ai aimé ce livre.", "positive")]
    with pytest.raises(ValueError, match=r"fr: record 1 has label 'Une catastrophe.'"):
        ed.read_polarity(text_first, "fr", 1, 0)  # the column order of the other files


def test_balanced_interleaves_labels_and_refuses_too_few():
    rows = [("a", "positive"), ("b", "positive"), ("c", "negative"), ("d", "positive"), ("e", "negative")]
    assert ed.balanced(rows, 2) == [("c", "negative"), ("a", "positive"), ("e", "negative"), ("b", "positive")]
    with pytest.raises(ValueError, match="cannot take 3 rows per label"):
        ed.balanced(rows, 3)


def test_sentiment_tsv_is_read_back_by_the_sentence_classification_reader(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text(ed.tsv_text([("great read", "positive"), ("dull", "negative")]), encoding="utf-8")
    examples = read_labelled_tsv(path, "sentence1", "label", "", "", "nl")
    assert [(e.text_a, e.text_b, e.label, e.language) for e in examples] == [
        ("great read", None, "positive", "nl"), ("dull", None, "negative", "nl")]


def _tagged_texts():
    texts = {ed.TAGGED[key].member: text for key, text in
             {"en-oanc": OANC, "en-wsj": WSJ, "de": TIGER, "es": WIKICORPUS, "it": WACKY, "nl": TWNC}.items()}
    # enough target sentences for a dev and a test split
    for key in ("de", "es", "it", "nl"):
        texts[ed.TAGGED[key].member] *= 10
    return texts


def test_pos_splits_english_train_dev_test_and_target_dev_test():
    sizes = ed.Sizes(train=5, dev=1, test=1, target_dev=2, sentiment_test=4)
    splits, summary = ed.build_pos(_tagged_texts(), TURKISH * 10, sizes)
    assert {split: len(s) for split, s in splits["en"].items()} == {"train": 2, "dev": 1, "test": 1}
    assert all(set(splits[lang]) == {"dev", "test"} for lang in ("de", "es", "it", "nl", "tr"))
    assert {split: len(s) for split, s in splits["es"].items()} == {"dev": 2, "test": 1}
    assert summary["it"]["unmapped_to_X"] == {"858": 10} and summary["en"]["unmapped_to_X"] == {}
    assert summary["tr"]["unmapped_to_X"] == {"ONOM": 10}
    assert set(summary["nl"]["tags"]) <= set(ed.UNIVERSAL_TAGS)


def test_sentiment_splits_are_balanced_and_disjoint():
    def csv_rows(n, text_first=False):
        rows = [(f"review {i}", "1" if i % 2 else "-1") for i in range(n)]
        return "".join(f'"{t}","{l}"\n' if text_first else f'"{l}","{t}"\n' for t, l in rows)

    texts = {member: csv_rows(40, text_first=(lang == "fr")) for lang, (member, _, _) in ed.POLARITY.items()}
    sizes = ed.Sizes(train=10, dev=4, test=4, target_dev=4, sentiment_test=6)
    splits, summary = ed.build_sentiment(texts, sizes)
    assert summary["en"]["rows"] == {"train": 10, "dev": 4, "test": 4}
    assert summary["fr"]["rows"] == {"dev": 4, "test": 6}
    for lang, parts in splits.items():
        texts_seen = [text for rows in parts.values() for text, _ in rows]
        assert len(texts_seen) == len(set(texts_seen)), lang
        for split, rows in parts.items():
            counts = Counter(label for _, label in rows)
            assert counts["positive"] == counts["negative"], (lang, split)
