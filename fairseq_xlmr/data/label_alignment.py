"""Word labels on sub-word tokens for tagging (NER, POS) as in XLM-R/XTREME fine-tuning (Conneau et al.,
2020; Hu et al., 2020): the label goes on a word's first piece, and sentences longer than the model
input are split into overlapping windows so that no word is dropped.

Pure functions on lists of ints; the task turns their output into tensors.
"""

from dataclasses import dataclass
from typing import List, Sequence, Tuple

# Targets at positions that are not scored (later pieces of a word, specials, padding, words owned
# by another window): PyTorch's cross-entropy default.
IGNORE_INDEX = -100


def first_subword_labels(word_pieces: Sequence[Sequence[int]], labels: Sequence[int]) -> Tuple[List[int], List[int]]:
    """Flatten words into tokens; the word's label on its first piece, IGNORE_INDEX on the others.

    word_pieces: the piece ids of each word (at least one each); labels: one label id per word.
    Returns (tokens, token_labels), both of length sum(len(pieces)).
    """
    if len(word_pieces) != len(labels):
        raise ValueError(f"{len(word_pieces)} words but {len(labels)} labels")
    tokens, token_labels = [], []
    for position, (pieces, label) in enumerate(zip(word_pieces, labels)):
        if not pieces:
            raise ValueError(f"word {position} has no piece; map it to <unk> before aligning")
        tokens.extend(pieces)
        token_labels.extend([label] + [IGNORE_INDEX] * (len(pieces) - 1))
    return tokens, token_labels


@dataclass(frozen=True)
class Window:
    """Words [first_word, end_word) of a sentence; `owned` are those this window predicts."""

    first_word: int
    end_word: int
    owned: Tuple[int, ...]


def plan_windows(word_lengths: Sequence[int], max_tokens: int, stride: int) -> List[Window]:
    """Cover a sentence with windows of at most `max_tokens` pieces that start on word boundaries.

    Each window takes as many whole words as fit; the next starts at the first word at least
    `stride` pieces after the current start (and never after the current end, so no word falls
    between windows). Every word is owned by exactly one window: the one where it has the most
    context, i.e. the largest min(pieces before it, pieces after it) inside the window (ties: the
    earlier window), as BERT does for SQuAD document spans. A sentence that fits is one window.

    word_lengths: pieces per word, each in [1, max_tokens].
    """
    if max_tokens < 1 or stride < 1:
        raise ValueError(f"max_tokens and stride must be >= 1, got {max_tokens} and {stride}")
    too_long = [i for i, n in enumerate(word_lengths) if not 1 <= n <= max_tokens]
    if too_long:
        raise ValueError(f"words {too_long[:5]} have lengths outside [1, {max_tokens}]; cap each word's pieces")
    offsets = [0]
    for n in word_lengths:
        offsets.append(offsets[-1] + n)
    num_words = len(word_lengths)

    spans = []  # (first_word, end_word)
    start = 0
    while True:
        end = start
        while end < num_words and offsets[end + 1] - offsets[start] <= max_tokens:
            end += 1
        spans.append((start, end))
        if end >= num_words:
            break
        following = start + 1
        while following < end and offsets[following] < offsets[start] + stride:
            following += 1
        start = following

    owner = []
    for word in range(num_words):
        best, best_context = None, -1
        for index, (first, end) in enumerate(spans):
            if first <= word < end:
                context = min(offsets[word] - offsets[first], offsets[end] - offsets[word + 1])
                if context > best_context:
                    best, best_context = index, context
        owner.append(best)
    return [Window(first, end, tuple(w for w in range(first, end) if owner[w] == index))
            for index, (first, end) in enumerate(spans)]


@dataclass(frozen=True)
class WindowExample:
    """One model input: `<s> pieces </s>`, with targets and word positions at owned first pieces."""

    tokens: List[int]
    labels: List[int]  # label id at the first piece of each owned word, IGNORE_INDEX elsewhere
    word_index: List[int]  # that word's position in the sentence, -1 elsewhere


def windowed_examples(word_pieces: Sequence[Sequence[int]], labels: Sequence[int], max_tokens: int, stride: int,
                      bos: int, eos: int) -> List[WindowExample]:
    """Split one labelled sentence into model inputs of at most `max_tokens` tokens (with <s>, </s>).

    A word with more pieces than fit in a window keeps its first ones (only the first is scored).
    Every word is scored in exactly one of the returned windows (see `plan_windows`).
    """
    content = max_tokens - 2
    if content < 1:
        raise ValueError(f"max_tokens must leave room for <s> and </s> and one piece, got {max_tokens}")
    word_pieces = [list(pieces[:content]) for pieces in word_pieces]
    examples = []
    for window in plan_windows([len(p) for p in word_pieces], content, stride):
        owned = set(window.owned)
        tokens, targets, word_index = [bos], [IGNORE_INDEX], [-1]
        for word in range(window.first_word, window.end_word):
            pieces = word_pieces[word]
            rest = [IGNORE_INDEX] * (len(pieces) - 1)
            tokens.extend(pieces)
            targets.extend(([labels[word]] if word in owned else [IGNORE_INDEX]) + rest)
            word_index.extend(([word] if word in owned else [-1]) + [-1] * len(rest))
        tokens.append(eos)
        targets.append(IGNORE_INDEX)
        word_index.append(-1)
        examples.append(WindowExample(tokens, targets, word_index))
    return examples


def collect_word_predictions(word_index: Sequence[Sequence[int]], predictions: Sequence[Sequence[int]],
                             window_sentence: Sequence[int], num_words: Sequence[int]) -> List[List[int]]:
    """Inverse of `windowed_examples`: token-level predictions of a batch of windows -> word labels.

    word_index[r][t]: the word scored at token t of window r (-1: none); predictions[r][t]: the
    predicted label id there; window_sentence[r]: the sentence (row in `num_words`) window r came
    from. Returns, per sentence, one prediction per word; raises if a word got none or several.
    """
    words: List[List[int]] = [[IGNORE_INDEX] * n for n in num_words]
    seen = [[0] * n for n in num_words]
    for row, sentence in enumerate(window_sentence):
        for position, word in enumerate(word_index[row]):
            if word >= 0:
                words[sentence][word] = predictions[row][position]
                seen[sentence][word] += 1
    for sentence, counts in enumerate(seen):
        if any(count != 1 for count in counts):
            bad = [w for w, count in enumerate(counts) if count != 1]
            raise ValueError(f"sentence {sentence}: words {bad[:5]} have {[counts[w] for w in bad[:5]]} "
                             "predictions, expected exactly one each")
    return words
