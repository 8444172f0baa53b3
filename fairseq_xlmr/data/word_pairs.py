"""Word pairs of a parallel sentence pair that a bilingual dictionary aligns: the positives of VECO 2.0's
token-level contrastive loss (Zhang et al., 2023; `fairseq_xlmr.modules.contrastive.token_info_nce`).
"""

from typing import Dict, List, Mapping, Sequence, Set, Tuple

from fairseq_xlmr.data.masking import SPM_WORD_START
from fairseq_xlmr.files import read_muse


def read_lexicon(path) -> Dict[str, Set[str]]:
    """A MUSE dictionary file (`files.read_muse`) as source word -> {target words}, lowercased."""
    lexicon: Dict[str, Set[str]] = {}
    for src, tgt in read_muse(path):
        lexicon.setdefault(src.lower(), set()).add(tgt.lower())
    return lexicon


def piece_words(pieces: Sequence[str], special: Sequence[bool]) -> Tuple[List[int], List[str]]:
    """Group SentencePiece pieces into words: a piece starting with '▁' opens a word.

    Args:
        pieces: the piece strings of one sentence; special: True for `<s>`, `</s>`, ... (no word).
    Returns:
        word index of each piece (-1 for specials and for pieces that are only punctuation) and the
        word strings (pieces joined, '▁' removed, lowercased, surrounding punctuation stripped).
    """
    word_of_piece, words, current = [], [], -1
    for piece, is_special in zip(pieces, special):
        if is_special:
            word_of_piece.append(-1)
            current = -1
            continue
        if piece.startswith(SPM_WORD_START) or current < 0:
            words.append("")
            current = len(words) - 1
        words[current] += piece.replace(SPM_WORD_START, "")
        word_of_piece.append(current)
    cleaned = [w.strip(".,;:!?\"'()[]{}«»“”‘’¿¡-").lower() for w in words]
    # Words that are only punctuation take part in no pair; renumber the others densely.
    keep = [i for i, w in enumerate(cleaned) if w]
    new_index = {old: new for new, old in enumerate(keep)}
    return [new_index.get(w, -1) for w in word_of_piece], [cleaned[i] for i in keep]


def mine_positives(src_words: Sequence[str], tgt_words: Sequence[str],
                   lexicon: Mapping[str, Set[str]]) -> List[Tuple[int, int]]:
    """Word pairs (i, j) of a parallel pair whose words the dictionary lists as translations.

    Args:
        src_words, tgt_words: lowercased words of the two sides (see `piece_words`).
        lexicon: src word → set of tgt words (see `read_lexicon`).
    Returns:
        sorted (src word index, tgt word index) positives; every other word of the pair is a negative.
    """
    where: Dict[str, List[int]] = {}
    for j, word in enumerate(tgt_words):
        where.setdefault(word, []).append(j)
    pairs = set()
    for i, word in enumerate(src_words):
        for translation in lexicon.get(word, ()):
            pairs.update((i, j) for j in where.get(translation, ()))
    return sorted(pairs)
