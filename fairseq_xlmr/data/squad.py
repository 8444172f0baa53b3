"""SQuAD v1.1-format extractive QA (SQuAD, MLQA, XQuAD) for XLM-R: reading, span mapping, windows, decoding.

Small pure functions that the task `xlmr_span_qa` chains (and tests check one by one):

    read_squad_json  -> QaExample (question, context, answers with character offsets)
    encode_text      -> fairseq ids + the character span of every SentencePiece piece
    char_to_token_span / token_to_char_span   (answer characters <-> context pieces)
    make_windows     -> `<s> Q </s></s> C </s>` windows over long contexts (BERT/XTREME doc stride)
    best_span        -> n-best start/end decoding inside one window; keep_best across windows

Character offsets come from SentencePiece itself, so they point into the original, un-normalised
text: `out_type="offset_mapping"` (sentencepiece 0.2.3, installed here, which refuses
"immutable_proto"; "proto" would need protobuf); older versions give the same Unicode spans through
`out_type="immutable_proto"` (its pieces' begin/end, converted from UTF-8 bytes by the wrapper).
"""

import json
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

# <s> Q </s></s> C </s>: the special tokens around a question + context pair (REFERENCE §3).
NUM_SPECIAL_TOKENS = 4


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset of the answer in the context


@dataclass(frozen=True)
class QaExample:
    id: str
    question: str
    context: str
    answers: Tuple[Answer, ...]


class EncodedText(NamedTuple):
    """A SentencePiece-encoded text. ids: `(n,)` fairseq ids; offsets: `(n, 2)` [begin, end)
    character span of each piece in the text, leading whitespace excluded (a lone `▁` is empty)."""

    ids: np.ndarray
    offsets: np.ndarray


# --------------------------------------------------------------------------- reading


def _get(obj, key: str, kind, where: str, path):
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{path}: {where} has no `{key}`; expected the SQuAD v1.1 format "
                         '{"data": [{"paragraphs": [{"context": ..., "qas": [{"id", "question", '
                         '"answers": [{"text", "answer_start"}]}]}]}]}.')
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{path}: {where}.{key} must be a {names}, got {type(value).__name__} "
                         f"({value!r:.60}); fix the file (SQuAD v1.1 format).")
    return value


def read_squad_json(path) -> List[QaExample]:
    """Every question of a SQuAD v1.1-format file (SQuAD, MLQA, XQuAD), in file order.

    Raises ValueError naming the entry for malformed files: missing fields, questions without
    answers (SQuAD 2.0's unanswerable ones included), blank answers, or an `answer_start` that does
    not point at the answer text in the context.
    """
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); expected a SQuAD v1.1-format file.") from None
    examples = []
    for i, article in enumerate(_get(document, "data", list, "the top level", path)):
        for j, paragraph in enumerate(_get(article, "paragraphs", list, f"data[{i}]", path)):
            where = f"data[{i}].paragraphs[{j}]"
            context = _get(paragraph, "context", str, where, path)
            for k, qa in enumerate(_get(paragraph, "qas", list, where, path)):
                examples.append(_read_question(qa, context, f"{where}.qas[{k}]", path))
    return examples


def _read_question(qa, context: str, where: str, path) -> QaExample:
    qid = str(_get(qa, "id", (str, int), where, path))
    question = _get(qa, "question", str, where, path)
    raw_answers = _get(qa, "answers", list, where, path)
    if not raw_answers or qa.get("is_impossible"):
        raise ValueError(f"{path}: {where} (id {qid}) has no answer; SQuAD v1.1-format training and "
                         "evaluation need at least one answer per question (SQuAD 2.0 unanswerable "
                         "questions are not supported). Remove the question or add its answer.")
    answers = []
    for a, raw in enumerate(raw_answers):
        text = _get(raw, "text", str, f"{where}.answers[{a}]", path)
        start = _get(raw, "answer_start", int, f"{where}.answers[{a}]", path)
        found = context[start:start + len(text)] if start >= 0 else None
        if found != text:
            raise ValueError(
                f"{path}: {where} (id {qid}): answers[{a}].answer_start = {start} does not point at the "
                f"answer text: context[{start}:{start + len(text)}] is {found!r}, the answer is {text!r}. "
                "answer_start must be the character offset of the answer in the context; fix it or the text."
            )
        if not text.strip():
            raise ValueError(f"{path}: {where} (id {qid}): answers[{a}].text is blank ({text!r}); "
                             "an extractive answer needs at least one non-space character.")
        answers.append(Answer(text, start))
    return QaExample(qid, question, context, tuple(answers))


# --------------------------------------------------------------------------- span mapping


def piece_spans(sp, text: str) -> Tuple[List[int], List[Tuple[int, int]]]:
    """(SentencePiece ids, [begin, end) character span of each piece) of `text`."""
    try:
        encoded = sp.encode(text, out_type="offset_mapping")
        return list(encoded["ids"]), [tuple(span) for span in encoded["offsets"]]
    except ValueError:
        # Older sentencepiece has no offset_mapping; its immutable proto carries the same spans
        # (converted from UTF-8 bytes to Unicode characters by the Python wrapper).
        proto = sp.encode(text, out_type="immutable_proto")
        return [p.id for p in proto.pieces], [(p.begin, p.end) for p in proto.pieces]


def encode_text(sp, id_table: np.ndarray, text: str) -> EncodedText:
    """SentencePiece-encode `text`; id_table maps SentencePiece ids to fairseq ids (binarize.build_id_table)."""
    spm_ids, spans = piece_spans(sp, text)
    offsets = np.array(spans, dtype=np.int64).reshape(-1, 2)
    # A word-initial piece ("▁Katze") covers the space before the word; an answer starts after it.
    for row in offsets:
        while row[0] < row[1] and text[row[0]].isspace():
            row[0] += 1
    return EncodedText(id_table[np.asarray(spm_ids, dtype=np.int64)], offsets)


def char_to_token_span(offsets: np.ndarray, start: int, end: int) -> Optional[Tuple[int, int]]:
    """First and last piece (inclusive) overlapping characters [start, end); None if none does.

    offsets: `(n, 2)` from encode_text (begins and ends non-decreasing).
    """
    first = int(np.searchsorted(offsets[:, 1], start, side="right"))  # first piece ending after start
    last = int(np.searchsorted(offsets[:, 0], end, side="left")) - 1  # last piece beginning before end
    if first >= len(offsets) or last < first:
        return None
    return first, last


def token_to_char_span(offsets: np.ndarray, first: int, last: int) -> Tuple[int, int]:
    """Characters [begin, end) covered by pieces first..last (inclusive)."""
    return int(offsets[first, 0]), int(offsets[last, 1])


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class QaWindow:
    """One model input over part of an example's context.

    tokens `(length,)`: `<s> Q </s></s> C </s>`; context pieces doc_offset .. doc_offset + num_context - 1
    of the example sit at positions context_start .. context_start + num_context - 1. start/end: target
    positions of the answer, 0 (`<s>`) for both when the answer is not entirely inside the window.
    """

    example_index: int
    tokens: np.ndarray
    context_start: int
    doc_offset: int
    num_context: int
    start: int
    end: int


def make_windows(example_index: int, question_ids: np.ndarray, context_ids: np.ndarray,
                 answer_span: Optional[Tuple[int, int]], max_length: int, doc_stride: int,
                 bos: int, eos: int) -> List[QaWindow]:
    """Cover the context with windows that start every `doc_stride` pieces (BERT/XTREME doc stride).

    answer_span: (first, last) context piece of the answer (training), or None. The caller truncates
    the question; max_length must leave room for at least one context piece.
    """
    room = max_length - len(question_ids) - NUM_SPECIAL_TOKENS
    if room < 1:
        raise ValueError(f"max_length {max_length} leaves no room for context after a {len(question_ids)}-piece "
                         f"question and {NUM_SPECIAL_TOKENS} special tokens; raise max_length or lower "
                         "max_query_length.")
    prefix = np.concatenate([[bos], question_ids, [eos, eos]]).astype(np.int32)
    context_start = len(prefix)
    windows, doc_offset = [], 0
    while True:
        piece_ids = context_ids[doc_offset:doc_offset + room]
        start = end = 0
        if answer_span is not None:
            first, last = answer_span
            if doc_offset <= first and last < doc_offset + len(piece_ids):
                start, end = context_start + first - doc_offset, context_start + last - doc_offset
        tokens = np.concatenate([prefix, piece_ids, [eos]]).astype(np.int32)
        windows.append(QaWindow(example_index, tokens, context_start, doc_offset, len(piece_ids), start, end))
        if doc_offset + room >= len(context_ids):
            return windows
        doc_offset += min(doc_stride, room)


def build_windows(examples: Sequence[QaExample], sp, id_table: np.ndarray, max_length: int, doc_stride: int,
                  max_query_length: int, bos: int, eos: int) -> Tuple[List[QaWindow], List[EncodedText]]:
    """Windows of every example (targets from its first answer) and each example's encoded context.

    Contexts shared by several questions (a SQuAD paragraph) are encoded once and shared.
    """
    cache: Dict[str, EncodedText] = {}
    windows, contexts = [], []
    for index, example in enumerate(examples):
        if example.context not in cache:
            cache[example.context] = encode_text(sp, id_table, example.context)
        context = cache[example.context]
        contexts.append(context)
        question_ids = encode_text(sp, id_table, example.question).ids[:max_query_length]
        answer = example.answers[0]
        span = char_to_token_span(context.offsets, answer.start, answer.start + len(answer.text))
        if span is None:
            raise ValueError(f"question {example.id}: answer {answer.text!r} at character {answer.start} "
                             "covers no SentencePiece piece of the context; check the answer offsets.")
        windows.extend(make_windows(index, question_ids, context.ids, span, max_length, doc_stride, bos, eos))
    return windows, contexts


# --------------------------------------------------------------------------- decoding


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, context_start: int, num_context: int,
              n_best: int = 20, max_answer_length: int = 30) -> Tuple[float, int, int]:
    """Best answer of one window: (start + end logit, first, last) with first/last counted in context pieces.

    start_logits, end_logits: `(length,)` over the window's tokens. Candidates are the n_best top
    start and end positions among context pieces only, with first <= last < first + max_answer_length.
    """
    starts = start_logits[context_start:context_start + num_context]
    ends = end_logits[context_start:context_start + num_context]
    k = min(n_best, num_context)
    top_starts = np.argsort(-starts, kind="stable")[:k]
    top_ends = np.argsort(-ends, kind="stable")[:k]
    scores = starts[top_starts][:, None] + ends[top_ends][None, :]  # (k, k)
    length = top_ends[None, :] - top_starts[:, None]
    scores = np.where((length >= 0) & (length < max_answer_length), scores, -np.inf)
    i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
    if not np.isfinite(scores[i, j]):
        # Every top start lies after every top end: fall back to the best single piece.
        best = int(np.argmax(starts + ends))
        return float(starts[best] + ends[best]), best, best
    return float(scores[i, j]), int(top_starts[i]), int(top_ends[j])


def window_answer(window: QaWindow, offsets: np.ndarray, start_logits: np.ndarray, end_logits: np.ndarray,
                  n_best: int = 20, max_answer_length: int = 30) -> Tuple[float, int, int]:
    """(score, begin, end): the window's best answer as a character span of its example's context."""
    score, first, last = best_span(start_logits, end_logits, window.context_start, window.num_context,
                                   n_best, max_answer_length)
    begin, end = token_to_char_span(offsets, window.doc_offset + first, window.doc_offset + last)
    return score, begin, end


def keep_best(best: Dict[int, Tuple[float, int, int]], key: int, candidate: Tuple[float, int, int]) -> None:
    """Keep the highest-scoring (score, begin, end) per example across its windows."""
    if key not in best or candidate[0] > best[key][0]:
        best[key] = candidate
