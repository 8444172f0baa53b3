"""Contrastive alignment losses (criterions/contrastive.py): hand-computed InfoNCE values, queue
negatives, dictionary positive mining, token-level InfoNCE, and negatives gathered over 2 gloo workers."""

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from fairseq_xlmr.data.word_pairs import mine_positives, piece_words, read_lexicon
from fairseq_xlmr.modules.contrastive import MemoryQueue, info_nce, pool_words, symmetric_info_nce, token_info_nce
from fairseq_xlmr.modules.pooling import pool_sequence


def softplus_log(x):
    """log(1 + e^x)."""
    return math.log1p(math.exp(x))


# src rows e1, e2; tgt rows e1, (0.6, 0.8): cos(src, tgt) = [[1, 0.6], [0, 0.8]].
SRC = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TGT = torch.tensor([[1.0, 0.0], [0.6, 0.8]])


def test_info_nce_matches_hand_computation():
    # τ = 0.5: logits row 0 = [2, 1.2] (target 0), row 1 = [0, 1.6] (target 1).
    loss = info_nce(SRC, TGT, temperature=0.5)
    assert loss.tolist() == pytest.approx([softplus_log(-0.8), softplus_log(-1.6)], abs=1e-6)
    assert loss.tolist() == pytest.approx([0.371101, 0.183901], abs=1e-6)


def test_symmetric_info_nce_matches_hand_computation():
    # tgt -> src logits: row 0 = [2, 0], row 1 = [1.2, 1.6].
    loss, correct = symmetric_info_nce(SRC * 3, TGT * 5, temperature=0.5, gather=False)  # scale-free
    expected = [(softplus_log(-0.8) + softplus_log(-2.0)) / 2, (softplus_log(-1.6) + softplus_log(-0.4)) / 2]
    assert loss.tolist() == pytest.approx(expected, abs=1e-6)
    assert loss.tolist() == pytest.approx([0.249015, 0.348458], abs=1e-6)
    assert correct.tolist() == [1.0, 1.0]


def test_queue_adds_negatives():
    # A queued tgt vector equal to src row 0 is one more candidate with logit 2 for query 0.
    queue = torch.tensor([[1.0, 0.0]])
    loss, _ = symmetric_info_nce(SRC, TGT, 0.5, gather=False, tgt_queue=queue)
    forward0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1.2) + math.exp(2)))
    assert loss[0].item() == pytest.approx((forward0 + softplus_log(-2.0)) / 2, abs=1e-6)


def test_memory_queue_keeps_newest_normalised():
    queue = MemoryQueue(size=3, dim=2)
    queue.push(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    queue.push(torch.tensor([[3.0, 4.0], [1.0, 0.0]]))
    assert torch.allclose(queue.get(), torch.tensor([[0.6, 0.8], [1.0, 0.0], [1.0, 0.0]]))


def test_pool_sequence_mean_skips_padding():
    states = torch.arange(12.0).view(2, 3, 2)
    tokens = torch.tensor([[0, 5, 2], [0, 2, 1]])  # pad = 1
    assert pool_sequence(states, tokens.ne(1), "mean").tolist() == [[2.0, 3.0], [7.0, 8.0]]
    assert pool_sequence(states, tokens.ne(1), "cls").tolist() == [[0.0, 1.0], [6.0, 7.0]]


def test_muse_dictionary_and_positive_mining(tmp_path):
    path = tmp_path / "en-de.txt"
    path.write_text("cat Katze\ncat Kater\nhouse Haus\n\nThe der\n", encoding="utf-8")
    lexicon = read_lexicon(path)
    assert lexicon == {"cat": {"katze", "kater"}, "house": {"haus"}, "the": {"der"}}
    path.with_name("bad.txt").write_text("cat Katze\nbad line with three\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: a MUSE dictionary line is `source target`"):
        read_lexicon(path.with_name("bad.txt"))
    # "▁The ▁cat , ▁sees ▁the ▁house ." -> words the, cat, sees, the, house (punctuation-only "," and "." dropped).
    src_pieces = ["<s>", "▁The", "▁c", "at", ",", "▁sees", "▁the", "▁house", "▁.", "</s>"]
    special = [p in ("<s>", "</s>") for p in src_pieces]
    word_of_piece, src_words = piece_words(src_pieces, special)
    assert src_words == ["the", "cat", "sees", "the", "house"]  # trailing punctuation stripped
    assert word_of_piece == [-1, 0, 1, 1, 1, 2, 3, 4, -1, -1]
    tgt_words = ["die", "katze", "sieht", "das", "haus", "der"]
    assert mine_positives(src_words, tgt_words, lexicon) == [(0, 5), (1, 1), (3, 5), (4, 4)]
    assert mine_positives(src_words, ["nichts"], lexicon) == []


def test_pool_words_means_pieces():
    states = torch.tensor([[[1.0], [3.0], [5.0], [7.0]]])
    word_index = torch.tensor([[-1, 0, 0, 1]])
    assert pool_words(states, word_index, 3).tolist() == [[[4.0], [7.0], [0.0]]]


def test_token_info_nce_matches_hand_computation():
    # One pair, src words (1, 0), (0, 1); tgt words (1, 0), (0.6, 0.8), (0, 1) of which the last is
    # padding; positives: src 0 <-> tgt 0 only. τ = 0.5.
    src = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    tgt = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])
    positives = torch.zeros(1, 2, 3, dtype=torch.bool)
    positives[0, 0, 0] = True
    loss, anchors = token_info_nce(src, tgt, torch.tensor([[True, True]]), torch.tensor([[True, True, False]]),
                                   positives, 0.5)
    # src 0 -> tgt: logits [2, 1.2] (padding excluded); tgt 0 -> src: logits [2, 0].
    assert anchors.item() == 2
    assert loss.item() == pytest.approx(softplus_log(-0.8) + softplus_log(-2.0), abs=1e-5)


def test_token_info_nce_without_positives_is_zero_with_finite_gradients():
    src = torch.randn(2, 3, 4, requires_grad=True)
    tgt = torch.randn(2, 2, 4)
    loss, anchors = token_info_nce(src, tgt, torch.ones(2, 3, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool),
                                   torch.zeros(2, 3, 2, dtype=torch.bool), 0.1)
    loss.backward()
    assert anchors.item() == 0 and loss.item() == 0.0 and torch.isfinite(src.grad).all()


# --------------------------------------------------------------------------- 2 gloo workers


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _batch():
    """6 pairs of 3-dim vectors; worker 0 holds rows 0-1, worker 1 rows 2-5 (unequal on purpose)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)


ROWS = {0: slice(0, 2), 1: slice(2, 6)}


def _worker(rank, port, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        src, tgt = (x[ROWS[rank]].clone().requires_grad_() for x in _batch())
        loss, correct = symmetric_info_nce(src, tgt, 0.3, gather=True)
        loss.sum().backward()
        torch.save({"loss": loss.detach(), "src_grad": src.grad, "tgt_grad": tgt.grad},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes import fairseq: ~30 s on a shared CPU
def test_negatives_gathered_from_two_gloo_workers(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    src, tgt = (x.clone().requires_grad_() for x in _batch())
    full, _ = symmetric_info_nce(src, tgt, 0.3, gather=False)  # one process, the whole batch
    local_only, _ = symmetric_info_nce(src[:2], tgt[:2], 0.3, gather=False)
    for rank, rows in ROWS.items():
        result = torch.load(tmp_path / f"rank{rank}.pt")
        # Each worker's loss uses all 6 pairs as candidates: the single-process values, not local ones.
        assert torch.allclose(result["loss"], full[rows].detach(), atol=1e-6)
        # Gradient reaches the local rows: that of this worker's loss terms on the whole batch.
        src.grad = tgt.grad = None
        full_again, _ = symmetric_info_nce(src, tgt, 0.3, gather=False)
        full_again[rows].sum().backward()
        assert torch.allclose(result["src_grad"], src.grad[rows], atol=1e-6)
        assert torch.allclose(result["tgt_grad"], tgt.grad[rows], atol=1e-6)
    assert not torch.allclose(local_only.detach(), full[:2].detach(), atol=1e-3)  # the gather matters
