"""Extractive QA metrics: SQuAD v1.1 (Rajpurkar et al., 2016) and MLQA (Lewis et al., 2020) EM / F1.

Both compare a predicted answer string with every gold answer after normalisation and keep the best
match. They differ in the normalisation:

- `squad` (the SQuAD v1.1 script, used by XTREME for XQuAD): lower-case, drop ASCII punctuation, drop
  the English articles a/an/the, collapse whitespace. Language-independent.
- `mlqa` (MLQA's `mlqa_evaluation_v1.py`, reimplemented here): lower-case, drop every character of a
  Unicode punctuation category (P*) or ASCII punctuation, drop the answer language's articles, then
  split on whitespace, or for Chinese into single CJK characters (mixed segmentation). Only the seven
  MLQA languages are defined; any other language is an error, as in the official script.
"""

import re
import string
import unicodedata
from collections import Counter
from typing import Callable, Dict, Iterable, List, Mapping, Optional

METRICS = ("mlqa", "squad")
MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")

_ASCII_PUNCT = frozenset(string.punctuation)

# Word-bounded article removal; `\b` is Unicode-aware for str patterns, as in the official script.
_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    # MLQA removes the Arabic definite article "ال" wherever it occurs, also inside words.
    "ar": re.compile("ال"),
    "hi": None,  # no articles
    "zh": None,
}
_CJK = re.compile("[\u4e00-\u9fa5]")  # the range MLQA's mixed segmentation splits into characters


def _is_unicode_punct(char: str) -> bool:
    """MLQA's punctuation: a Unicode P* category character, or ASCII punctuation (e.g. `$`, `+`)."""
    return char in _ASCII_PUNCT or unicodedata.category(char).startswith("P")


def check_language(lang: Optional[str], metric: str, field: str = "language") -> None:
    """ValueError unless `metric` is known and defines a normalisation for `lang`."""
    if metric not in METRICS:
        raise ValueError(f"QA metric must be one of {', '.join(METRICS)}, got {metric!r}.")
    if metric == "mlqa" and lang not in MLQA_LANGUAGES:
        raise ValueError(
            f"`{field}` {lang!r} has no MLQA answer normalisation (MLQA defines {', '.join(MLQA_LANGUAGES)}); "
            "use the SQuAD v1.1 metric (`squad`, as XTREME does for XQuAD) for other languages."
        )


def _mixed_segmentation(text: str) -> List[str]:
    """Whitespace tokens, except that every CJK character (and punctuation mark) is its own token."""
    tokens, pending = [], []
    for char in text:
        if _CJK.match(char) or _is_unicode_punct(char):
            tokens.extend("".join(pending).split())
            pending = []
            tokens.append(char)
        else:
            pending.append(char)
    tokens.extend("".join(pending).split())
    return tokens


def normalize_answer(text: str, lang: Optional[str] = None, metric: str = "mlqa") -> str:
    """The normalised answer: tokens joined by single spaces (see the module docstring)."""
    text = text.lower()
    if metric == "squad":
        text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
        text = _ARTICLES["en"].sub(" ", text)
        return " ".join(text.split())
    check_language(lang, metric)
    text = "".join(ch for ch in text if not _is_unicode_punct(ch))
    if _ARTICLES[lang] is not None:
        text = _ARTICLES[lang].sub(" ", text)
    tokens = _mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip())


def exact_match(prediction: str, gold: str, lang: Optional[str] = None, metric: str = "mlqa") -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction, lang, metric) == normalize_answer(gold, lang, metric))


def f1(prediction: str, gold: str, lang: Optional[str] = None, metric: str = "mlqa") -> float:
    """Bag-of-tokens F1 in [0, 1] between the normalised strings (0 when nothing overlaps)."""
    predicted = normalize_answer(prediction, lang, metric).split()
    expected = normalize_answer(gold, lang, metric).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def max_over_gold(score: Callable[..., float], prediction: str, golds: Iterable[str],
                  lang: Optional[str] = None, metric: str = "mlqa") -> float:
    """The best score of `prediction` against any gold answer."""
    return max(score(prediction, gold, lang, metric) for gold in golds)


def score_predictions(golds: Mapping[str, List[str]], predictions: Mapping[str, str],
                      lang: Optional[str] = None, metric: str = "mlqa") -> Dict[str, float]:
    """{"exact_match", "f1"} in percent over every question of `golds` (id -> gold answer texts).

    A question without a prediction scores 0, as in the official scripts; `count` is the number of
    questions.
    """
    check_language(lang, metric)
    em_total = f1_total = 0.0
    for qid, answers in golds.items():
        if qid not in predictions:
            continue
        em_total += max_over_gold(exact_match, predictions[qid], answers, lang, metric)
        f1_total += max_over_gold(f1, predictions[qid], answers, lang, metric)
    count = len(golds)
    return {
        "exact_match": 100.0 * em_total / count if count else 0.0,
        "f1": 100.0 * f1_total / count if count else 0.0,
        "count": count,
    }
