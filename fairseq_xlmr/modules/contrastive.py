"""Contrastive alignment losses of VECO 2.0 (Zhang et al., 2023) as pure functions: sequence-level
InfoNCE over parallel pairs (negatives gathered from every worker, optional memory queue) and
token-level InfoNCE over dictionary-aligned word pairs (`fairseq_xlmr.data.word_pairs` finds them).
"""

from typing import Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

# --------------------------------------------------------------------------- sequence level


def gather_with_grad(x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Concatenate `x` of every worker along dim 0; gradient flows into the local part only.

    Workers may hold different numbers of rows (the last batch of an epoch is short), so sizes are
    exchanged first and rows padded to the largest. Without an initialised process group this is
    the identity.
    Args:
        x: (n_local, dim).
    Returns:
        (sum of n over workers, dim) and the offset of the local rows in it.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.size(0)], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(sizes),) + tuple(x.shape[1:]))
    padded[: x.size(0)] = x.detach()
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    # all_gather returns tensors without autograd history: put the local tensor (with its graph)
    # back in its slot so this worker's rows get gradients; the other workers do the same for theirs.
    parts = [x if r == rank else g[: sizes[r]] for r, g in enumerate(gathered)]
    return torch.cat(parts, dim=0), sum(sizes[:rank])


def info_nce(queries: torch.Tensor, keys: torch.Tensor, temperature: float, offset: int = 0) -> torch.Tensor:
    """One-directional InfoNCE: query i's positive is key `offset + i`, every other key is a negative.

    Args:
        queries: (n, dim), L2-normalised.
        keys: (m, dim), L2-normalised, m >= offset + n (in-batch keys, other workers' keys, queue).
        temperature: τ > 0; logits are cosine / τ.
    Returns:
        (n,) per-query loss -log softmax(q_i · K / τ)[offset + i].
    """
    logits = queries @ keys.t() / temperature  # (n, m)
    targets = torch.arange(queries.size(0), device=queries.device) + offset
    return F.cross_entropy(logits, targets, reduction="none")


def symmetric_info_nce(
    src: torch.Tensor,
    tgt: torch.Tensor,
    temperature: float,
    gather: bool = True,
    src_queue: Optional[torch.Tensor] = None,
    tgt_queue: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sequence-to-sequence contrastive loss of a batch of parallel pairs, both directions.

    Row i of `src` and of `tgt` are translations. src→tgt uses every worker's `tgt` rows (with
    `gather` and a process group) plus `tgt_queue` as candidates; tgt→src the same with the roles
    swapped; the loss of a pair is the mean of its two directions.
    Args:
        src, tgt: (n, dim) sentence representations (not necessarily normalised).
        src_queue, tgt_queue: optional (k, dim) L2-normalised past representations, extra negatives.
    Returns:
        loss (n,) per pair, and accuracy (n,) float: 1 where both directions rank the translation first.
    """
    src, tgt = F.normalize(src, dim=-1), F.normalize(tgt, dim=-1)
    all_src, offset = gather_with_grad(src) if gather else (src, 0)
    all_tgt, _ = gather_with_grad(tgt) if gather else (tgt, 0)
    if tgt_queue is not None and tgt_queue.numel():
        all_tgt = torch.cat([all_tgt, tgt_queue.to(all_tgt)], dim=0)
    if src_queue is not None and src_queue.numel():
        all_src = torch.cat([all_src, src_queue.to(all_src)], dim=0)
    forward = info_nce(src, all_tgt, temperature, offset)
    backward = info_nce(tgt, all_src, temperature, offset)
    with torch.no_grad():
        rows = torch.arange(src.size(0), device=src.device) + offset
        correct = ((src @ all_tgt.t()).argmax(-1) == rows) & ((tgt @ all_src.t()).argmax(-1) == rows)
    return (forward + backward) / 2, correct.float()


class MemoryQueue(torch.nn.Module):
    """A FIFO of the last `size` L2-normalised representations (no gradient), as extra negatives.

    A buffer, so it follows the criterion's device but is not saved (persistent=False): a resumed
    run refills it within size / batch updates.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.size = size
        self.register_buffer("items", torch.zeros(0, dim), persistent=False)

    def get(self) -> torch.Tensor:
        """(k, dim) with k <= size: the stored representations, newest first."""
        return self.items

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Add (n, dim) rows (normalised here), dropping the oldest beyond `size`."""
        x = F.normalize(x.detach().to(self.items), dim=-1)
        self.items = torch.cat([x, self.items], dim=0)[: self.size]


# --------------------------------------------------------------------------- token level

_BLOCKED = -1e4  # logit of a masked candidate: exp() underflows to 0 even in fp16


def pool_words(states: torch.Tensor, word_index: torch.Tensor, num_words: int) -> torch.Tensor:
    """Mean of the piece states of each word.

    Args:
        states: (batch, seq_len, dim); word_index: (batch, seq_len), the word of each piece or -1.
    Returns:
        (batch, num_words, dim); words without pieces are zero.
    """
    batch, _, dim = states.shape
    valid = word_index.ge(0)
    index = word_index.clamp(min=0).unsqueeze(-1).expand(-1, -1, dim)
    summed = states.new_zeros(batch, num_words, dim).scatter_add(1, index, states * valid.unsqueeze(-1).to(states))
    counts = states.new_zeros(batch, num_words).scatter_add(1, word_index.clamp(min=0), valid.to(states))
    return summed / counts.clamp(min=1).unsqueeze(-1)


def token_info_nce(src_words: torch.Tensor, tgt_words: torch.Tensor, src_mask: torch.Tensor,
                   tgt_mask: torch.Tensor, positives: torch.Tensor, temperature: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Token-to-token InfoNCE inside each parallel pair, both directions.

    An anchor is a word with at least one dictionary positive on the other side; its candidates
    are all words of the other side of the same pair, and its loss is -log of the softmax mass on
    its positives (several translations may occur).
    Args:
        src_words: (batch, Ws, dim), tgt_words: (batch, Wt, dim) word representations.
        src_mask: (batch, Ws), tgt_mask: (batch, Wt) bool, True for real words.
        positives: (batch, Ws, Wt) bool, True where the dictionary aligns the two words.
        temperature: τ > 0.
    Returns:
        the summed loss over anchors of both directions (scalar) and the number of anchors (scalar).
    """
    src, tgt = F.normalize(src_words, dim=-1), F.normalize(tgt_words, dim=-1)
    logits = torch.bmm(src, tgt.transpose(1, 2)) / temperature  # (batch, Ws, Wt)
    positives = positives & src_mask.unsqueeze(2) & tgt_mask.unsqueeze(1)

    def direction(logits, candidates, positives):
        # logits (batch, anchors, candidates); candidates (batch, candidates) mask. A large finite
        # negative, not -inf: rows without candidates or positives must not produce NaN gradients.
        logits = logits.masked_fill(~candidates.unsqueeze(1), _BLOCKED)
        anchors = positives.any(-1)
        log_all = torch.logsumexp(logits, dim=-1)
        # Non-anchors count every candidate as positive: their loss is exactly 0.
        log_pos = torch.logsumexp(logits.masked_fill(~(positives | ~anchors.unsqueeze(-1)), _BLOCKED), dim=-1)
        return (log_all - log_pos).sum(), anchors.sum()

    loss_st, n_st = direction(logits, tgt_mask, positives)
    loss_ts, n_ts = direction(logits.transpose(1, 2), src_mask, positives.transpose(1, 2))
    return loss_st + loss_ts, n_st + n_ts
