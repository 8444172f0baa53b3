"""Readers for the standard fine-tuning formats (XTREME tasks); pure functions over files."""

from fairseq_xlmr.data.readers.sentences import (
    SentenceExample,
    read_labelled_jsonl,
    read_labelled_tsv,
    read_pawsx_tsv,
    read_xnli_15way,
    read_xnli_jsonl,
    read_xnli_tsv,
)
from fairseq_xlmr.data.readers.tagging import TaggedSentence, read_conll, read_conllu, read_wikiann

__all__ = [
    "SentenceExample", "read_labelled_jsonl", "read_labelled_tsv", "read_pawsx_tsv",
    "read_xnli_15way", "read_xnli_jsonl", "read_xnli_tsv", "TaggedSentence", "read_conll", "read_conllu",
    "read_wikiann",
]
