"""Readers for word-level tagging data: CoNLL-2002/2003 NER (Tjong Kim Sang, 2002; Tjong Kim Sang and
De Meulder, 2003), WikiANN / PAN-X (Pan et al., 2017) and Universal Dependencies CoNLL-U (UPOS).

Every reader returns a list of `TaggedSentence`: the words of one sentence and one label per word.
"""

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from fairseq_xlmr.files import read_lines


@dataclass(frozen=True)
class TaggedSentence:
    words: Tuple[str, ...]
    labels: Tuple[str, ...]
    language: str


def _blocks(lines: List[str]) -> Iterator[List[Tuple[int, str]]]:
    """Groups of (line number, line) separated by blank lines."""
    block: List[Tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            block.append((number, line))
        elif block:
            yield block
            block = []
    if block:
        yield block


def read_conll(path, language: str, label_column: int = -1, encoding: str = "auto") -> List[TaggedSentence]:
    """CoNLL-2002/2003 NER: one word per line (`word [POS chunk] label`, space- or tab-separated),
    a blank line between sentences, `-DOCSTART-` lines between documents (skipped).

    The label is the `label_column`-th column (default: the last, which is the NER tag in eng/deu
    (4 columns), ned (3) and esp (2)). The Spanish and Dutch files are Latin-1: encoding "auto"
    detects that.
    """
    sentences = []
    for block in _blocks(read_lines(path, encoding)):
        words, labels = [], []
        for number, line in block:
            columns = line.split()
            if columns[0] == "-DOCSTART-":
                continue
            if len(columns) < 2:
                raise ValueError(f"{path}:{number}: {line!r} has one column; a CoNLL line is "
                                 "`word ... label` (is this an unlabelled test file?).")
            try:
                labels.append(columns[label_column])
            except IndexError:
                raise ValueError(f"{path}:{number}: no column {label_column} in {line!r}; "
                                 "set --label-column to the NER column.") from None
            words.append(columns[0])
        if words:
            sentences.append(TaggedSentence(tuple(words), tuple(labels), language))
    return sentences


def read_wikiann(path, language: Optional[str] = None, encoding: str = "auto") -> List[TaggedSentence]:
    """WikiANN / PAN-X as XTREME distributes it: `lang:word<TAB>label` per line, blank line between
    sentences. The `lang:` prefix names the language (it wins over `language`); only the first ":"
    splits, so words such as "http://..." stay whole."""
    sentences = []
    for block in _blocks(read_lines(path, encoding)):
        words, labels, block_language = [], [], None
        for number, line in block:
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: {line!r} is not `lang:word<TAB>label`.")
            token, label = fields
            prefix, sep, word = token.partition(":")
            if sep and prefix and word:
                block_language = prefix
            else:
                word = token
            words.append(word)
            labels.append(label.strip())
        lang = block_language or language
        if lang is None:
            raise ValueError(f"{path}:{block[0][0]}: the words carry no `lang:` prefix and no language was "
                             "given; put `{lang}` in the file pattern.")
        sentences.append(TaggedSentence(tuple(words), tuple(labels), lang))
    return sentences


def read_conllu(path, language: str, encoding: str = "auto") -> List[TaggedSentence]:
    """Universal Dependencies CoNLL-U with UPOS labels (XTREME's UD-POS), from a file."""
    return parse_conllu(read_lines(path, encoding), language, source=str(path))


def parse_conllu(lines: List[str], language: str, source: str) -> List[TaggedSentence]:
    """CoNLL-U lines -> sentences with UPOS labels; `source` names them in errors.

    Ten tab-separated columns (ID FORM LEMMA UPOS ...); `#` comment lines are skipped, and so are
    multiword-token ranges (`1-2`, whose parts follow as words) and empty nodes (`1.1`), so every
    word is counted once with its own UPOS tag.
    """
    sentences = []
    for block in _blocks(lines):
        words, labels = [], []
        for number, line in block:
            if line.startswith("#"):
                continue
            columns = line.split("\t")
            if len(columns) != 10:
                raise ValueError(f"{source}:{number}: {len(columns)} tab-separated columns; CoNLL-U has 10.")
            if "-" in columns[0] or "." in columns[0]:
                continue
            words.append(columns[1])
            labels.append(columns[3])
        if words:
            sentences.append(TaggedSentence(tuple(words), tuple(labels), language))
    return sentences
