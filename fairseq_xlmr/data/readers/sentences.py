"""Readers for sentence(-pair) classification data: XNLI (Conneau et al., 2018), PAWS-X (Yang et al.,
2019) and generic labelled tsv/jsonl files.

Every reader returns a list of `SentenceExample`. A file either holds one language (the caller
passes `language`) or names each row's language in a column (XNLI-1.0 dev/test: `language`).
"""

import json
import logging
from dataclasses import dataclass
from typing import Dict, List, Optional

from fairseq_xlmr.files import read_lines

logger = logging.getLogger(__name__)

# XNLI-MT's translated training sets spell the class "contradictory"; XNLI-1.0 and MultiNLI (and
# XTREME, which maps it) say "contradiction". One spelling keeps train and eval labels the same.
NLI_LABEL_SPELLINGS = {"contradictory": "contradiction"}


@dataclass(frozen=True)
class SentenceExample:
    """One classification example; `text_b` is None for single-sentence tasks."""

    text_a: str
    text_b: Optional[str]
    label: str
    language: str


def _row_language(row_language: Optional[str], language: Optional[str], where: str) -> str:
    if row_language:
        return row_language
    if language:
        return language
    raise ValueError(f"{where}: the row names no language and none was given; put `{{lang}}` in the "
                     "file pattern (one file per language) or add a language column.")


def _tsv_rows(path, encoding: str = "auto"):
    """(line number, header, fields) for every non-empty line after the header of a tab-separated file."""
    lines = read_lines(path, encoding)
    if not lines or not lines[0].strip():
        raise ValueError(f"{str(path)!r} is empty; expected a header line and tab-separated rows.")
    header = lines[0].split("\t")
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            yield number, header, line.split("\t")


def _field(fields: List[str], header: List[str], name: str, where: str) -> str:
    try:
        return fields[header.index(name)]
    except IndexError:
        raise ValueError(f"{where}: has {len(fields)} tab-separated fields, the header has "
                         f"{len(header)}; fix the line (a stray tab or a missing field).") from None


def read_xnli_tsv(path, language: Optional[str] = None) -> List[SentenceExample]:
    """XNLI-1.0 `xnli.{dev,test}.tsv`, MultiNLI train tsv, or XNLI-MT `multinli.train.<lang>.tsv`.

    The variant is told by the header: `gold_label ... sentence1 sentence2` (XNLI-1.0, with a
    `language` column, and MultiNLI; rows whose gold label is "-", i.e. no annotator majority, are
    skipped) or `premise hypo label` (XNLI-MT). "contradictory" is read as "contradiction".
    """
    examples, skipped = [], 0
    for number, header, fields in _tsv_rows(path):
        where = f"{path}:{number}"
        if {"gold_label", "sentence1", "sentence2"} <= set(header):
            text_a, text_b, label = (_field(fields, header, name, where)
                                     for name in ("sentence1", "sentence2", "gold_label"))
            row_language = _field(fields, header, "language", where) if "language" in header else None
        elif {"premise", "hypo", "label"} <= set(header):
            text_a, text_b, label = (_field(fields, header, name, where) for name in ("premise", "hypo", "label"))
            row_language = None
        else:
            raise ValueError(f"{str(path)!r}: header {header} is neither XNLI-1.0/MultiNLI "
                             "(gold_label, sentence1, sentence2) nor XNLI-MT (premise, hypo, label).")
        if label == "-":
            skipped += 1
            continue
        examples.append(SentenceExample(text_a, text_b, NLI_LABEL_SPELLINGS.get(label, label),
                                        _row_language(row_language, language, where)))
    if skipped:
        logger.info("%s: skipped %d rows without a gold label ('-')", path, skipped)
    return examples


def _jsonl_rows(path):
    """(`file:line`, parsed object) for every non-empty line of a JSON-lines file."""
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{number}", json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON object ({err.msg}); each line of a .jsonl file "
                             "must be one JSON object.") from None


def read_xnli_jsonl(path, language: Optional[str] = None) -> List[SentenceExample]:
    """XNLI as JSON lines: {"premise", "hypothesis", "label"} (the HF datasets export, integer labels
    0/1/2 = entailment/neutral/contradiction are kept as written) or {"sentence1", "sentence2",
    "gold_label"}; an optional "language" key names the row's language."""
    examples = []
    for where, row in _jsonl_rows(path):
        keys = ("premise", "hypothesis", "label") if "premise" in row else ("sentence1", "sentence2", "gold_label")
        missing = [key for key in keys if key not in row]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}; an XNLI jsonl row has premise, hypothesis, "
                             "label (or sentence1, sentence2, gold_label).")
        label = str(row[keys[2]])
        if label == "-":
            continue
        examples.append(SentenceExample(row[keys[0]], row[keys[1]], NLI_LABEL_SPELLINGS.get(label, label),
                                        _row_language(row.get("language"), language, where)))
    return examples


def read_pawsx_tsv(path, language: Optional[str] = None) -> List[SentenceExample]:
    """PAWS-X `{train,dev_2k,test_2k,translated_train}.tsv`: header `id sentence1 sentence2 label`.

    Some machine-translated training rows have an empty sentence; they are skipped (and counted).
    """
    examples, skipped = [], 0
    for number, header, fields in _tsv_rows(path):
        where = f"{path}:{number}"
        missing = {"sentence1", "sentence2", "label"} - set(header)
        if missing:
            raise ValueError(f"{str(path)!r}: header {header} lacks {sorted(missing)}; PAWS-X files have "
                             "id, sentence1, sentence2, label.")
        if len(fields) < len(header):
            skipped += 1
            continue
        text_a, text_b, label = (_field(fields, header, name, where) for name in ("sentence1", "sentence2", "label"))
        if not text_a.strip() or not text_b.strip():
            skipped += 1
            continue
        examples.append(SentenceExample(text_a, text_b, label, _row_language(None, language, where)))
    if skipped:
        logger.info("%s: skipped %d rows with an empty or missing sentence", path, skipped)
    return examples


def read_labelled_tsv(path, text_column: str, label_column: str, text_b_column: str = "",
                      language_column: str = "", language: Optional[str] = None) -> List[SentenceExample]:
    """A tsv with a header row; the columns are named by the arguments (`text_b_column` "" = single
    sentences, `language_column` "" or absent from the header = `language` for every row)."""
    examples = []
    for number, header, fields in _tsv_rows(path):
        where = f"{path}:{number}"
        names = [text_column, label_column] + ([text_b_column] if text_b_column else [])
        missing = [name for name in names if name not in header]
        if missing:
            raise ValueError(f"{str(path)!r}: header {header} has no column {missing}; name the columns "
                             "with --text-column/--text-b-column/--label-column.")
        text_b = _field(fields, header, text_b_column, where) if text_b_column else None
        row_language = (_field(fields, header, language_column, where)
                        if language_column and language_column in header else None)
        examples.append(SentenceExample(_field(fields, header, text_column, where), text_b,
                                        _field(fields, header, label_column, where),
                                        _row_language(row_language, language, where)))
    return examples


def read_labelled_jsonl(path, text_column: str, label_column: str, text_b_column: str = "",
                        language_column: str = "", language: Optional[str] = None) -> List[SentenceExample]:
    """JSON lines; the keys are named as in `read_labelled_tsv`. Labels are kept as strings."""
    examples = []
    for where, row in _jsonl_rows(path):
        names = [text_column, label_column] + ([text_b_column] if text_b_column else [])
        missing = [name for name in names if name not in row]
        if missing:
            raise ValueError(f"{where}: no key {missing} (keys: {sorted(row)}); name them with "
                             "--text-column/--text-b-column/--label-column.")
        examples.append(SentenceExample(row[text_column], row[text_b_column] if text_b_column else None,
                                        str(row[label_column]),
                                        _row_language(row.get(language_column) if language_column else None,
                                                      language, where)))
    return examples


def read_xnli_15way(path) -> Dict[str, List[str]]:
    """`xnli.15way.orig.tsv`: a header of 15 language codes, then one sentence per language per row
    (the same sentence in 15 languages, without labels). Returns {language: sentences}, aligned by index."""
    lines = [line for line in read_lines(path) if line.strip()]
    if not lines:
        raise ValueError(f"{str(path)!r} is empty; expected a header of language codes.")
    languages = lines[0].split("\t")
    columns: Dict[str, List[str]] = {lang: [] for lang in languages}
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(languages):
            raise ValueError(f"{path}:{number}: {len(fields)} fields for {len(languages)} languages.")
        for lang, sentence in zip(languages, fields):
            columns[lang].append(sentence)
    return columns
