"""SQuAD v1.1 and MLQA EM/F1 on hand-computed cases."""

import pytest

from fairseq_xlmr.evaluation.qa_metrics import exact_match, f1, max_over_gold, normalize_answer, score_predictions


def test_squad_f1_drops_articles_and_punctuation():
    # "the cat sat" -> [cat, sat]; "a cat sat on" -> [cat, sat, on]: P = 2/2, R = 2/3, F1 = 0.8.
    assert f1("the cat sat", "a cat sat on", metric="squad") == pytest.approx(0.8)
    assert exact_match("the cat sat", "a cat sat on", metric="squad") == 0.0
    assert exact_match("The Cat, sat!", "cat sat", metric="squad") == 1.0
    # Repeated tokens count once per occurrence: [cat, cat] vs [cat]: P = 1/2, R = 1, F1 = 2/3.
    assert f1("cat cat", "cat", metric="squad") == pytest.approx(2 / 3)
    assert f1("dog", "cat", metric="squad") == 0.0
    assert f1("", "", metric="squad") == 0.0 and exact_match("", "", metric="squad") == 1.0  # as the official script


def test_squad_keeps_unicode_punctuation_mlqa_drops_it():
    assert normalize_answer("«Hola»", metric="squad") == "«hola»"
    assert normalize_answer("«Hola»", "es", metric="mlqa") == "hola"
    assert normalize_answer("¿Dónde?", "es", metric="mlqa") == "dónde"


@pytest.mark.parametrize("lang, text, normalised", [
    ("en", "The Eiffel Tower.", "eiffel tower"),
    ("es", "Los Reyes y las reinas", "reyes y reinas"),
    ("de", "Die Katze des Nachbarn", "katze nachbarn"),
    ("de", "Diese Katze", "diese katze"),  # articles only as whole words
    ("vi", "Cái bàn của tôi", "bàn tôi"),
    ("ar", "الكتاب", "كتاب"),  # MLQA removes the prefix ال
    ("hi", "एक किताब।", "एक किताब"),  # no articles; the danda is punctuation (Po)
    ("zh", "北京大学，中国", "北 京 大 学 中 国"),  # mixed segmentation: one token per CJK character
    ("zh", "iPhone手机", "iphone 手 机"),
])
def test_mlqa_normalisation_per_language(lang, text, normalised):
    assert normalize_answer(text, lang, metric="mlqa") == normalised


def test_mlqa_f1_chinese_characters():
    # [北, 京, 大, 学] vs [北, 京]: P = 2/4, R = 2/2, F1 = 2/3.
    assert f1("北京大学", "北京", "zh") == pytest.approx(2 / 3)
    assert exact_match("北京。", "北京", "zh") == 1.0


def test_max_over_gold_and_corpus_scores():
    assert max_over_gold(f1, "cat sat", ["dog", "the cat sat on the mat"], "en") == pytest.approx(2 * 1 * 0.5 / 1.5)
    golds = {"q1": ["Katze"], "q2": ["der Hund", "Hund"], "q3": ["Baum"]}
    predictions = {"q1": "die Katze", "q2": "großer Hund"}  # q3 unanswered: scores 0
    scores = score_predictions(golds, predictions, "de", "mlqa")
    # q1: EM 1, F1 1; q2: [großer, hund] vs [hund]: F1 = 2/3; q3: 0.
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert scores["count"] == 3


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'ru' has no MLQA answer normalisation.*squad"):
        normalize_answer("кот", "ru", metric="mlqa")
    assert normalize_answer("Кот.", "ru", metric="squad") == "кот"
