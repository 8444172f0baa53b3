"""`xlmr fetch-dictionaries`: English→X bilingual dictionaries in MUSE's format (Conneau et al., 2018) for
word-translation (BLI) analyses, from FreeDict ranked by wordfreq frequencies.

    xlmr fetch-dictionaries --out-dir dictionaries --languages de,fr,es,ru

Sources (pinned, sha256-checked, cached under ~/.cache/fairseq_xlmr/downloads):
- Debian `dict-freedict-eng-<xxx>` (apt-get download): a dictd database, `<name>.index` (one line per
  headword: `word<TAB>offset<TAB>length`, offsets in dictd's base64) and `<name>.dict.dz` (dictzip, which
  gzip reads). An entry is a headword line (`word /pronunciation/ <pos>`) and translation lines,
  sometimes numbered (`1. ...`); indented lines are examples or cross-references.
- PyPI `wordfreq==3.1.1` (wheel, not installed): `wordfreq/data/small_<lang>.msgpack.gz`, words in bins of
  decreasing frequency; decoding it needs `msgpack` (`pip install fairseq_xlmr[dictionaries]`).

Filtering: single-word English headwords and single-word translations (lower-cased, without
parenthesised glosses), both found in their language's wordfreq list; for the non-Latin-script
languages a translation must hold no Latin letter (FreeDict eng-jpn also carries English glosses).
A source word keeps its --max-translations most frequent translations. Pairs are ordered by the English
word's frequency rank, then the translation's, as MUSE's files are.

Output (`--out-dir`): en-<x>.txt (every pair), en-<x>.0-5000.txt (pairs of the 5,000 most frequent
source words: train) and en-<x>.5000-6500.txt (the next 1,500: test), one `en x` pair per line, and
summary.json with the counts.
"""

import gzip
import importlib.util
import json
import re
import unicodedata
import zipfile
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

from tqdm import tqdm

from fairseq_xlmr.files import parse_list, write_atomic
from fairseq_xlmr.preprocess.downloads import Pinned, PinnedWheel, ensure_downloads, extracted, pip_download

# Debian 12 (bookworm) packages: language -> pinned .deb.
_PINNED_TABLE = """
de dict-freedict-eng-deu 2022.04.21-1 e85da1519a4d5efdbd7a5a169e828b97920f91e899f45d56fd5b2266a05b5906
fr dict-freedict-eng-fra 2022.04.21-1 b8db6774b640ae8a372bee119b4304d88e6fd471a283d1326d7ec0abcc8b930e
es dict-freedict-eng-spa 2022.04.21-1 1b6a624048eddad805dcf0473a74e53420fbe391e7f2638090bddf625e9ad2b6
ru dict-freedict-eng-rus 2022.04.21-1 0683c8eda017ff1082815c3bd918a7c9f1516b18621fcdf0ef46a9a1b9d61ea3
ar dict-freedict-eng-ara 2022.04.21-1 a4528bf4f3a340f71d229526cd7e1853f1bc0477da4c0b7944bdb9595c7f23d3
hi dict-freedict-eng-hin 2022.04.21-1 15b21e02e94b1a3a31a0b7a298687bee518797586a70745655cf5cefd3721c67
ja dict-freedict-eng-jpn 2022.12.07-2 3d06a55a8fa16a529b9f95b8d2fe3f7163700cea03aa7ee5b53c40dcdd6c6868
el dict-freedict-eng-ell 2022.04.21-1 b6a7d3154f93fc26554d2e3fd2529b98bfc67d17020a4ff8b2fe804373c83ecc
bg dict-freedict-eng-bul 2022.12.07-2 91e23fe0ec1dfff19b27d302d7fba32fcc93f95e9b8965939d6f4c966e478389
tr dict-freedict-eng-tur 2022.04.21-1 dd18d6682827301cb7131fda95728dd4c5ec3d73da6dab1f98619310608fbd99
"""
DICTIONARIES = {row.split()[0]: Pinned("apt", *row.split()[1:]) for row in _PINNED_TABLE.strip().splitlines()}
WORDFREQ = PinnedWheel("wordfreq", "3.1.1", "wheel", "4b1c6ecffc6198be3396d5cf871c4423ca71c907c231348d352dd54d62b97473")
NON_LATIN = {"ru", "ar", "hi", "ja", "el", "bg"}  # scripts in which a Latin letter marks an English gloss
TRAIN_WORDS, TEST_WORDS = 5000, 1500  # MUSE's 0-5000 / 5000-6500 split by source frequency rank

_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_PRONUNCIATION = re.compile(r"\s/.*?/(?=\s|$)")  # "/ɐ ɹˈɒmp/", also the doubled "//ˈlaːfəbl̩//"
_POS = re.compile(r"\s<[^>]*>")
_GLOSS = re.compile(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}|\"[^\"]*\"")
_NUMBERED = re.compile(r"^\d+\.\s+")
_LATIN = re.compile(r"[A-Za-z]")


# --------------------------------------------------------------------------- dictd parsing


def decode_b64(text: str) -> int:
    """dictd's base64 number (most significant digit first): "B+" -> 1*64 + 62 = 126."""
    value = 0
    for char in text:
        if char not in _B64:
            raise ValueError(f"{text!r} is not a dictd base64 number (bad character {char!r}).")
        value = value * 64 + _B64[char]
    return value


def parse_index(text: str) -> List[Tuple[str, int, int]]:
    """`.index` text -> [(headword, offset, length)], one per line, in file order."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"dictd index line {number} needs word<TAB>offset<TAB>length, got {line!r}.")
        rows.append((fields[0], decode_b64(fields[1]), decode_b64(fields[2])))
    return rows


def parse_entry(text: str) -> Tuple[str, List[str]]:
    """One FreeDict entry -> (headword, translations) with pronunciation, part of speech, numbering,
    parenthesised glosses, examples and cross-references removed; a line's text after its first ". "
    (Turkish entries run derived words on: "karlı, kazançlı. lucratively  karlı olarak") is dropped."""
    lines = text.split("\n")
    headword = " ".join(_clean(lines[0]).split())
    translations = []
    for line in lines[1:]:
        # Examples ("      \"...\""), notes and synonyms are indented by 2+ spaces; cross-references
        # start with " see:"; a one-space indent is only a leading gloss (" [Am.] Laufmasche").
        if not line.strip() or line.startswith("  ") or line.strip().startswith("see:"):
            continue
        line = _clean(_NUMBERED.sub("", line.strip())).split(". ")[0].rstrip(".")
        for part in re.split(r"[,;]", line):
            part = " ".join(part.split())
            if part:
                translations.append(part)
    return headword, translations


def _clean(line: str) -> str:
    """A line without pronunciations, parts of speech (`<v, intr>`) and bracketed or quoted glosses."""
    return _GLOSS.sub(" ", _POS.sub(" ", _PRONUNCIATION.sub(" ", " " + line)))


def dictd_entries(index_text: str, data: bytes) -> Iterator[Tuple[str, List[str]]]:
    """(headword, translations) of every entry of a dictd database, each once (several index lines may
    point to one entry), skipping dictd's own `00-database-*` info entries."""
    seen = set()
    for word, offset, length in parse_index(index_text):
        if word.startswith("00database") or word.startswith("00-database") or offset in seen:
            continue
        seen.add(offset)
        yield parse_entry(data[offset:offset + length].decode("utf-8"))


# --------------------------------------------------------------------------- frequencies, filtering, splits


def wordfreq_ranks(bins: Sequence) -> Dict[str, int]:
    """wordfreq's cBpack list (a header dict, then bins of words of decreasing frequency) -> {word: rank},
    rank 0 = most frequent; words within a bin keep the file's order."""
    if not bins or not isinstance(bins[0], dict) or bins[0].get("format") != "cB":
        raise ValueError("not a wordfreq cBpack list: the first item must be {'format': 'cB', ...}.")
    ranks = {}
    for words in bins[1:]:
        for word in words:
            ranks.setdefault(word, len(ranks))
    return ranks


def read_wordfreq(wheel: Path, lang: str) -> Dict[str, int]:
    """{word: frequency rank} of `lang` from the wordfreq wheel's small_<lang>.msgpack.gz."""
    import msgpack

    with zipfile.ZipFile(wheel) as archive:
        packed = archive.read(f"wordfreq/data/small_{lang}.msgpack.gz")
    return wordfreq_ranks(msgpack.loads(gzip.decompress(packed), raw=False, strict_map_key=False))


def is_word(text: str, lang: str) -> bool:
    """A single word of letters (and the combining marks of Indic and Arabic scripts) only; in a
    non-Latin-script language, with no Latin letter."""
    letters = all(ch.isalpha() or unicodedata.category(ch).startswith("M") for ch in text)
    return bool(text) and letters and not (lang in NON_LATIN and _LATIN.search(text))


def rank_pairs(entries, src_ranks: Dict[str, int], tgt_ranks: Dict[str, int], tgt_lang: str,
               max_translations: int = 5) -> List[Tuple[str, str]]:
    """Filtered, deduplicated (en, x) pairs ordered by the English rank, then the translation's rank;
    each English word keeps its `max_translations` most frequent translations."""
    by_source: Dict[str, set] = {}
    for headword, translations in entries:
        src = headword.lower()
        if not is_word(src, "en") or src not in src_ranks:
            continue
        for translation in translations:
            tgt = translation.lower()
            if is_word(tgt, tgt_lang) and tgt in tgt_ranks:
                by_source.setdefault(src, set()).add(tgt)
    pairs = []
    for src in sorted(by_source, key=src_ranks.__getitem__):
        best = sorted(by_source[src], key=tgt_ranks.__getitem__)[:max_translations]
        pairs.extend((src, tgt) for tgt in best)
    return pairs


def split_by_source_rank(pairs: Sequence[Tuple[str, str]], train_words: int = TRAIN_WORDS,
                         test_words: int = TEST_WORDS) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
    """MUSE's split of pairs ordered by source frequency: the pairs of the first `train_words` distinct
    source words train, those of the next `test_words` test."""
    rank: Dict[str, int] = {}
    for src, _ in pairs:
        rank.setdefault(src, len(rank))
    train = [p for p in pairs if rank[p[0]] < train_words]
    test = [p for p in pairs if train_words <= rank[p[0]] < train_words + test_words]
    return train, test


def muse_text(pairs: Sequence[Tuple[str, str]]) -> str:
    return "".join(f"{src} {tgt}\n" for src, tgt in pairs)


# --------------------------------------------------------------------------- command


def run(args) -> int:
    languages = parse_list(args.languages, "--languages", list(DICTIONARIES))
    if args.max_translations < 1:
        raise ValueError(f"--max-translations must be >= 1, got {args.max_translations}; MUSE lists a few per word.")
    if args.train_words < 1 or args.test_words < 1:
        raise ValueError(f"--train-words ({args.train_words}) and --test-words ({args.test_words}) must be >= 1; "
                         "MUSE uses 5000 and 1500.")
    if importlib.util.find_spec("msgpack") is None:  # checked before anything is downloaded
        raise RuntimeError("`xlmr fetch-dictionaries` reads wordfreq's msgpack files: `pip install msgpack` "
                           "(or `pip install fairseq_xlmr[dictionaries]`).")
    cache, out = Path(args.cache_dir).expanduser(), Path(args.out_dir)
    cache.mkdir(parents=True, exist_ok=True)
    wheel = pip_download(WORDFREQ, cache)
    debs = ensure_downloads([DICTIONARIES[lang] for lang in languages], cache, args.allow_unpinned)
    en_ranks = read_wordfreq(wheel, "en")
    summary = {"sources": {lang: DICTIONARIES[lang]._asdict() for lang in languages},
               "wordfreq": WORDFREQ._asdict(), "max_translations": args.max_translations, "languages": {}}
    for lang in tqdm(languages, desc="dictionaries", unit="lang"):
        with extracted(debs[DICTIONARIES[lang].name][0], cache) as root:
            index = next((root / "usr/share/dictd").glob("*.index"))
            text = index.read_text(encoding="utf-8")
            data = gzip.decompress(index.with_name(index.name[:-len(".index")] + ".dict.dz").read_bytes())
        entries = list(dictd_entries(text, data))
        pairs = rank_pairs(entries, en_ranks, read_wordfreq(wheel, lang), lang, args.max_translations)
        train, test = split_by_source_rank(pairs, args.train_words, args.test_words)
        end = args.train_words + args.test_words
        write_atomic(out / f"en-{lang}.txt", muse_text(pairs))
        write_atomic(out / f"en-{lang}.0-{args.train_words}.txt", muse_text(train))
        write_atomic(out / f"en-{lang}.{args.train_words}-{end}.txt", muse_text(test))
        summary["languages"][lang] = {"entries": len(entries), "pairs": len(pairs),
                                      "source_words": len({s for s, _ in pairs}),
                                      "train_pairs": len(train), "test_pairs": len(test),
                                      "test_source_words": len({s for s, _ in test})}
    write_atomic(out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=1) + "\n")
    print(f"{'pair':<7}{'entries':>9}{'pairs':>8}{'en words':>10}{'train':>7}{'test':>6}")
    for lang, info in summary["languages"].items():
        print(f"en-{lang:<4}{info['entries']:>9}{info['pairs']:>8}{info['source_words']:>10}"
              f"{info['train_pairs']:>7}{info['test_pairs']:>6}")
    print(f"wrote {out}")
    return 0
