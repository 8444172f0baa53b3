"""What the analyses read from a model directory: per-layer sentence states and word embeddings, plus the
parallel text and MUSE dictionaries they are computed on (Conneau, Wu et al., 2020).

Words are whole words: a word's vector is the mean of the vectors of the SentencePiece pieces it is
split into (the input embedding rows, or the layer states of its pieces averaged over its occurrences).
"""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch
from tqdm import tqdm

from fairseq_xlmr.data.masking import SPM_WORD_START
from fairseq_xlmr.evaluation.retrieval import embed_sentences
from fairseq_xlmr.files import read_lines, read_muse
from fairseq_xlmr.preprocess.dictionaries import split_by_source_rank


def load_hubs(model_a, model_b, cpu: bool = False):
    """The hubs of --model-a and --model-b (the same object when B is absent or the same directory)."""
    hub_a = load_hub(model_a, cpu)
    same = model_b is None or Path(model_b).resolve() == Path(model_a).resolve()
    return hub_a, hub_a if same else load_hub(model_b, cpu)


def load_hub(model_dir, cpu: bool = False):
    from fairseq_xlmr.hub import XlmrHubInterface

    hub = XlmrHubInterface.from_pretrained(str(model_dir))
    if torch.cuda.is_available() and not cpu:
        hub.cuda()
    return hub


def num_layers(hub) -> int:
    return len(hub.model.encoder.sentence_encoder.layers)


def sentence_states(hub, sentences: Sequence[str], batch_size: int = 32) -> Dict[int, torch.Tensor]:
    """{layer 0..L: `(n, dim)`} mean-pooled states (non-pad tokens, `<s>`/`</s>` included) of every layer."""
    return embed_sentences(hub, sentences, list(range(num_layers(hub) + 1)), "mean", batch_size)


# --------------------------------------------------------------------------- parallel text


def read_parallel(data_dir, lang_a: str, lang_b: str, max_lines: int = 0) -> Tuple[List[str], List[str]]:
    """Aligned line pairs from `<dir>/<a>.txt` + `<dir>/<b>.txt` (UDHR layout) or `<dir>/<a>-<b>.{a,b}` /
    `<dir>/<b>-<a>.{a,b}` (corpus/para layout); pairs with an empty side dropped; first `max_lines` kept."""
    data_dir = Path(data_dir)
    candidates = [(data_dir / f"{lang_a}.txt", data_dir / f"{lang_b}.txt")]
    for pair in (f"{lang_a}-{lang_b}", f"{lang_b}-{lang_a}"):
        candidates.append((data_dir / f"{pair}.{lang_a}", data_dir / f"{pair}.{lang_b}"))
    found = next(((a, b) for a, b in candidates if a.is_file() and b.is_file()), None)
    if found is None:
        raise ValueError(f"no parallel {lang_a}/{lang_b} text in {data_dir}: expected {lang_a}.txt + {lang_b}.txt "
                         f"(aligned lines, e.g. corpus/udhr) or {lang_a}-{lang_b}.{{{lang_a},{lang_b}}} "
                         "(e.g. corpus/para). Fix --data-dir or the languages.")
    xs, ys = read_lines(found[0], "utf-8"), read_lines(found[1], "utf-8")
    if len(xs) != len(ys):
        raise ValueError(f"{found[0]} has {len(xs)} lines but {found[1]} has {len(ys)}; parallel files must match "
                         "line by line.")
    kept = [(x, y) for x, y in zip(xs, ys) if x.strip() and y.strip()]
    if max_lines > 0:
        kept = kept[:max_lines]
    return [x for x, _ in kept], [y for _, y in kept]


# --------------------------------------------------------------------------- dictionaries


def load_dictionaries(path, src: str, tgt: str, train_words: int = 5000,
                      test_words: int = 1500) -> Tuple[List[Tuple[str, str]], List[Tuple[str, str]]]:
    """(train, test) pairs src->tgt from a `xlmr fetch-dictionaries` dir (`<a>-<b>.0-5000.txt`,
    `<a>-<b>.5000-6500.txt`, either direction) or from one MUSE file split by source rank."""
    path = Path(path)
    if path.is_file():
        return split_by_source_rank(read_muse(path), train_words, test_words)
    for a, b, flip in ((src, tgt, False), (tgt, src, True)):
        train_file = path / f"{a}-{b}.0-{train_words}.txt"
        test_file = path / f"{a}-{b}.{train_words}-{train_words + test_words}.txt"
        if train_file.is_file() and test_file.is_file():
            train, test = read_muse(train_file), read_muse(test_file)
            if flip:
                train, test = [(y, x) for x, y in train], [(y, x) for x, y in test]
            return train, test
    raise ValueError(f"--dictionary {path}: expected a MUSE file or a dir with {src}-{tgt}.0-{train_words}.txt and "
                     f"{src}-{tgt}.{train_words}-{train_words + test_words}.txt (written by `xlmr fetch-dictionaries`).")


# --------------------------------------------------------------------------- word vectors


def word_pieces(hub, word: str) -> List[int]:
    """Dictionary ids of the pieces of `word` as SentencePiece splits it at the start of a sentence."""
    return hub.pieces_to_ids(hub.sp.encode(word, out_type=str))


def input_word_embeddings(hub, words: Sequence[str]) -> torch.Tensor:
    """`(n, dim)`: each word's mean input-embedding row over its pieces (`<unk>` pieces included: a word
    the vocabulary cannot spell gets the `<unk>` row, which the tokenizer would give it too)."""
    table = hub.model.encoder.sentence_encoder.embed_tokens.weight.detach().float().cpu()
    rows = []
    for word in words:
        ids = word_pieces(hub, word)
        rows.append(table[ids].mean(0) if ids else torch.zeros(table.shape[1]))
    return torch.stack(rows) if rows else torch.empty(0, table.shape[1])


def group_words(pieces: Sequence[str]) -> List[Tuple[str, int, int]]:
    """Whitespace words of a piece sequence: [(lower-cased word without edge punctuation, first piece,
    end piece)], a word starting at every piece that begins with "▁"."""
    spans, start = [], None
    for i, piece in enumerate(pieces):
        if piece.startswith(SPM_WORD_START) or start is None:
            if start is not None:
                spans.append((start, i))
            start = i
    if start is not None:
        spans.append((start, len(pieces)))
    words = []
    for begin, end in spans:
        text = "".join(pieces[begin:end]).replace(SPM_WORD_START, "")
        text = text.strip(".,;:!?\"'()[]«»„“”‘’¡¿。、，").lower()
        if text:
            words.append((text, begin, end))
    return words


@torch.no_grad()
def contextual_word_embeddings(hub, words: Sequence[str], sentences: Sequence[str], layer: int,
                               batch_size: int = 32, max_occurrences: int = 100,
                               desc: str = "contextual words") -> Tuple[torch.Tensor, List[bool]]:
    """Each word's layer-`layer` state averaged over its pieces and then over its occurrences in
    `sentences` (at most `max_occurrences` each): (`(n, dim)`, found[i]); a word never seen stays zero."""
    from fairseq.data import data_utils

    wanted = {w.lower(): i for i, w in enumerate(words)}
    dim = hub.model.encoder.sentence_encoder.embed_tokens.weight.shape[1]
    sums = torch.zeros(len(words), dim, dtype=torch.float64)
    counts = torch.zeros(len(words), dtype=torch.long)
    max_tokens = hub.model.max_positions()
    jobs = []  # (token ids, [(word index, first token, end token)])
    for sentence in sentences:
        pieces = hub.sp.encode(sentence, out_type=str)[:max_tokens - 2]
        hits = [(wanted[w], b + 1, e + 1) for w, b, e in group_words(pieces) if w in wanted]  # +1: <s>
        hits = [h for h in hits if counts[h[0]] < max_occurrences]
        if not hits:
            continue
        for index, _, _ in hits:
            counts[index] += 1
        ids = [hub.dictionary.bos()] + hub.pieces_to_ids(pieces) + [hub.dictionary.eos()]
        jobs.append((torch.tensor(ids), hits))
    counts.zero_()
    pad = hub.dictionary.pad()
    for start in tqdm(range(0, len(jobs), batch_size), desc=desc, unit="batch", leave=False):
        batch = jobs[start:start + batch_size]
        tokens = data_utils.collate_tokens([ids for ids, _ in batch], pad).to(hub.device)
        _, extra = hub.model(tokens, features_only=True, return_all_hiddens=True)
        states = extra["inner_states"][layer].transpose(0, 1).double().cpu()  # (batch, seq_len, dim)
        for row, (_, hits) in enumerate(batch):
            for index, begin, end in hits:
                sums[index] += states[row, begin:end].mean(0)
                counts[index] += 1
    found = [int(c) > 0 for c in counts]
    return (sums / counts.clamp_min(1)[:, None]).float(), found

