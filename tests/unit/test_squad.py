"""SQuAD-format reading, SentencePiece span mapping, document-stride windows and n-best decoding."""

import json

import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary

from fairseq_xlmr.data.squad import (
    build_windows,
    char_to_token_span,
    encode_text,
    best_span,
    keep_best,
    make_windows,
    read_squad_json,
    token_to_char_span,
    window_answer,
)
from fairseq_xlmr.preprocess.binarize import build_id_table
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm

BOS, EOS = 0, 2


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """(SentencePieceProcessor, SPM id -> fairseq id table) of a tiny en/de/zh model."""
    root = tmp_path_factory.mktemp("spm")
    corpus = make_tiny_corpus(root / "corpus", languages=("en", "de", "zh"), lines=150)
    files = make_tiny_spm(root / "spm", corpus, vocab_size=120)
    sp = spm.SentencePieceProcessor(model_file=str(files["spm"]))
    return sp, build_id_table(sp, Dictionary.load(str(files["dict"])))


def squad_file(path, paragraphs):
    """Write a SQuAD v1.1 file; paragraphs: [(context, [(qid, question, [(text, start)])])]."""
    data = [{"title": "t", "paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": question,
                                      "answers": [{"text": t, "answer_start": s} for t, s in answers]}
                                     for qid, question, answers in qas]}
        for context, qas in paragraphs]}]
    path.write_text(json.dumps({"version": "1.1", "data": data}, ensure_ascii=False), encoding="utf-8")
    return path


def test_reader_reads_every_question_with_its_answers(tmp_path):
    context = "Der Hund sieht die Katze."
    path = squad_file(tmp_path / "dev.json", [(context, [("q1", "Wer?", [("Hund", 4), ("Der Hund", 0)]),
                                                         ("q2", "Was?", [("die Katze", 15)])])])
    examples = read_squad_json(path)
    assert [e.id for e in examples] == ["q1", "q2"]
    assert [(a.text, a.start) for a in examples[0].answers] == [("Hund", 4), ("Der Hund", 0)]
    assert examples[1].context == context


@pytest.mark.parametrize("answers, message", [
    ([("Katze", 3)], r"q1\): answers\[0\].answer_start = 3 does not point at the answer text: "
                     r"context\[3:8\] is ' Hund', the answer is 'Katze'"),
    ([], r"data\[0\].paragraphs\[0\].qas\[0\] \(id q1\) has no answer"),
    ([(" ", 3)], r"answers\[0\].text is blank"),
])
def test_reader_rejects_bad_answers(tmp_path, answers, message):
    path = squad_file(tmp_path / "bad.json", [("Der Hund sieht die Katze.", [("q1", "Wer?", answers)])])
    with pytest.raises(ValueError, match=message):
        read_squad_json(path)


def test_reader_rejects_missing_fields_and_bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "q", "question": "?"}]}]}]}))
    with pytest.raises(ValueError, match=r"data\[0\].paragraphs\[0\].qas\[0\] has no `answers`"):
        read_squad_json(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_squad_json(path)


@pytest.mark.parametrize("text", ["Die Katze  läuft über den Fluss.", "猫狗 房子树。",
                                  "  The red book, and a ﬁne city."])
def test_every_word_maps_to_pieces_and_back(tokenizer, text):
    sp, id_table = tokenizer
    encoded = encode_text(sp, id_table, text)
    assert encoded.ids.tolist() == id_table[sp.encode(text)].tolist()
    position = 0
    for word in text.split():
        start = text.index(word, position)
        position = start + len(word)
        first, last = char_to_token_span(encoded.offsets, start, position)
        # The pieces of a word cover exactly the word: no leading space, nothing from its neighbours.
        assert text[slice(*token_to_char_span(encoded.offsets, first, last))] == word


def test_span_mapping_on_hand_offsets():
    # "ab cd": pieces "▁ab" (0, 2), "▁" (3, 3) for the space, "c" (3, 4), "d" (4, 5).
    offsets = np.array([[0, 2], [3, 3], [3, 4], [4, 5]])
    assert char_to_token_span(offsets, 3, 5) == (2, 3)
    assert char_to_token_span(offsets, 1, 2) == (0, 0)  # inside a piece: the whole piece
    assert char_to_token_span(offsets, 5, 6) is None


def test_windows_follow_the_doc_stride_and_mark_answers_outside():
    question = np.array([7, 8])
    context = np.arange(20, 30)  # 10 context pieces
    # max_length 10: room for 10 - 2 - 4 = 4 context pieces; windows start at 0, 3, 6.
    windows = make_windows(5, question, context, (4, 5), max_length=10, doc_stride=3, bos=BOS, eos=EOS)
    assert [w.doc_offset for w in windows] == [0, 3, 6]
    assert windows[1].tokens.tolist() == [BOS, 7, 8, EOS, EOS, 23, 24, 25, 26, EOS]
    assert [w.context_start for w in windows] == [5, 5, 5] and [w.num_context for w in windows] == [4, 4, 4]
    # Pieces 4..5 lie only inside the middle window, at positions 5 + (4 - 3) = 6 and 7.
    assert [(w.start, w.end) for w in windows] == [(0, 0), (6, 7), (0, 0)]
    assert all(w.example_index == 5 for w in windows)
    with pytest.raises(ValueError, match="leaves no room for context"):
        make_windows(0, np.arange(6), context, None, max_length=10, doc_stride=3, bos=BOS, eos=EOS)


def test_best_span_only_in_context_with_end_after_start_and_max_length():
    # Window: <s> q </s></s> c0 c1 c2 c3 </s>; context starts at 4.
    start = np.array([9.0, 9.0, 0, 0, 1.0, 0.0, 3.0, 0.0, 9.0])
    end = np.array([9.0, 9.0, 0, 0, 0.0, 2.0, 0.0, 0.5, 9.0])
    # Best pair: start c2 (3.0) with an end at or after it: c3 (0.5) -> 3.5 beats c0..c1 (1 + 2 = 3).
    assert best_span(start, end, 4, 4) == (3.5, 2, 3)
    # With max answer length 1 only single pieces remain: c2..c2 = 3.0 beats c0..c0 = 1.0.
    assert best_span(start, end, 4, 4, max_answer_length=1) == (3.0, 2, 2)
    # n_best 1: only the top start (c2) and the top end (c1) are candidates, and c1 < c2.
    assert best_span(start, end, 4, 4, n_best=1) == (3.0, 2, 2)  # falls back to the best single piece


def test_keep_best_across_windows():
    best = {}
    for candidate in [(1.0, 0, 3), (2.5, 10, 12), (2.0, 4, 5)]:
        keep_best(best, 7, candidate)
    assert best == {7: (2.5, 10, 12)}


def test_windows_decode_back_to_the_answer_text(tokenizer, tmp_path):
    """Peaked logits at each window's targets decode to exactly the gold answer (long context, 3 windows)."""
    sp, id_table = tokenizer
    words = "der Hund sieht das Haus und die Katze mag den Fluss".split()
    context = " ".join(words[i % len(words)] for i in range(40)) + " am Morgen kommt der Lehrer."
    answer = "der Lehrer"
    path = squad_file(tmp_path / "long.json", [(context, [("q", "Wer kommt?", [(answer, context.index(answer))])])])
    examples = read_squad_json(path)
    windows, contexts = build_windows(examples, sp, id_table, max_length=48, doc_stride=24, max_query_length=64,
                                      bos=BOS, eos=EOS)
    assert len(windows) >= 3 and windows[0].start == 0 and windows[-1].start > 0
    best = {}
    for window in windows:
        logits = np.zeros((2, len(window.tokens)))
        logits[0, window.start] = logits[1, window.end] = 10.0  # windows without the answer peak at <s>
        keep_best(best, window.example_index,
                  window_answer(window, contexts[0].offsets, logits[0], logits[1]))
    _, begin, end = best[0]
    assert context[begin:end] == answer
