"""`xlmr eval-retrieval`: parallel-sentence retrieval from XLM-R layers, Tatoeba/BUCC style (XTREME, Hu et al., 2020).

Sentence embeddings are the mean of a layer's states over the non-pad tokens (`<s>` and `</s>`
included, as XTREME) or the `<s>` state, for every layer from one forward pass. For each language
paired with a pivot (English), line i of one side is the translation of line i of the other, and a
query is correct when its nearest neighbour on the other side is its translation; accuracy is
reported per language, per layer and in both directions, for two scorings:

- cosine: nearest neighbour by cosine similarity (XTREME's Tatoeba);
- margin: ratio margin (Artetxe & Schwenk, 2019; LASER, XTREME's BUCC),
  score(x, y) = cos(x, y) / (Σ_{z∈NN_k(x)} cos(x, z) / 2k + Σ_{z∈NN_k(y)} cos(y, z) / 2k), k = 4, where
  NN_k(x) are x's k nearest neighbours on the other side; as in LASER, the candidates for x are NN_k(x).

`--pooling lexical` needs no model: a sentence is the binary bag of its SentencePiece pieces (only
`sentencepiece.bpe.model` is read from --model-dir), so cosine is the share of pieces two sentences
have in common (Ochiai). It is the floor a learned representation should clear: on closely related
languages shared spellings (names, numbers, cognates) alone retrieve many translations. Reported as layer 0.

`--center` subtracts each language's mean embedding (per layer) before scoring, which removes the
language-identity component of the states (Libovický et al., 2020, "On the Language Neutrality of
Pre-trained Multilingual Representations"); it uses only the evaluated sentences, no labels.

Neighbour search uses faiss (`faiss-cpu`) when importable and the pools are large, else exact torch
matrix products in blocks. Input: `<dir>/<lang>.txt` aligned line by line (e.g. the UDHR files of
`xlmr fetch-corpora`), or Tatoeba's `tatoeba.<xx>-eng.<xx>` / `tatoeba.<xx>-eng.eng` pairs.
Output: retrieval.json (everything), retrieval.png (accuracy per layer per language) and results.json
(format: `fairseq_xlmr.evaluation.results`; xx→pivot accuracy at --report-layer).
"""

import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from fairseq_xlmr.files import SPM_FILE, parse_list, read_lines, write_json
from fairseq_xlmr.modules.pooling import center_columns, pool_sequence

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls", "lexical")
SCORINGS = ("cosine", "margin")
BACKENDS = ("auto", "torch", "faiss")
FAISS_MIN_PAIRS = 10_000 * 10_000  # queries x keys above which "auto" uses faiss (when importable)
BLOCK_ROWS = 4096  # query rows per similarity block on the torch path


def run(args) -> int:
    from fairseq_xlmr.hub import XlmrHubInterface

    if args.margin_k < 1:
        raise ValueError(f"--margin-k must be at least 1, got {args.margin_k}; LASER and XTREME use 4.")
    requested = parse_list(args.languages, "--languages") if args.languages else None
    if args.format == "aligned":
        pairs = read_aligned(args.data_dir, args.pivot, requested)
    else:
        pairs = read_tatoeba(args.data_dir, requested)
    if args.max_sentences > 0:
        pairs = {lang: (xs[:args.max_sentences], ys[:args.max_sentences]) for lang, (xs, ys) in pairs.items()}
    if args.pooling == "lexical":
        if args.report_layer != 0:
            raise ValueError(f"--pooling lexical has one layer, 0 (no model); got --report-layer "
                             f"{args.report_layer}. Pass --report-layer 0.")
        layers, embed = [0], lexical_embedder(Path(args.model_dir) / SPM_FILE)
    else:
        hub = XlmrHubInterface.from_pretrained(args.model_dir, args.checkpoint_file)
        if torch.cuda.is_available() and not args.cpu:
            hub.cuda()
        num_layers = len(hub.model.encoder.sentence_encoder.layers)
        layers = parse_layers(args.layers, num_layers)
        if args.report_layer not in layers:
            raise ValueError(f"--report-layer {args.report_layer} is not among the evaluated layers {layers}; the "
                             f"model has layers 0..{num_layers}. Add it to --layers or pick one of them.")
        embed = model_embedder(hub, layers, args.pooling, args.batch_size)
    results = evaluate_pairs(embed, pairs, layers, args.pooling, args.margin_k, args.backend, args.center)
    results.update(pivot=args.pivot if args.format == "aligned" else "eng", format=args.format)
    write_outputs(Path(args.out_dir), results, args.name, args.seed, args.report_layer, args.scoring)
    at = results["layers"].index(args.report_layer)
    for lang, acc in results["accuracy"][args.scoring].items():
        print(f"{lang:<10} {args.scoring} layer {args.report_layer}: to pivot {acc['to_pivot'][at]:6.2f}  "
              f"from pivot {acc['from_pivot'][at]:6.2f}  ({results['sizes'][lang]} pairs)")
    return 0


# --------------------------------------------------------------------------- inputs


Pairs = Dict[str, Tuple[List[str], List[str]]]  # language -> (its sentences, the aligned pivot sentences)


def read_aligned(data_dir, pivot: str, languages: Optional[Sequence[str]] = None) -> Pairs:
    """{lang: (lang lines, pivot lines)} from `<dir>/<lang>.txt`, dropping pairs where a side is empty."""
    data_dir = Path(data_dir)
    found = sorted(p.stem for p in data_dir.glob("*.txt"))
    if pivot not in found:
        raise ValueError(f"--pivot {pivot!r} has no {data_dir / (pivot + '.txt')}; languages in {data_dir}: "
                         f"{', '.join(found[:20]) or 'none'}{' ...' if len(found) > 20 else ''}.")
    wanted = [lang for lang in (languages or found) if lang != pivot]
    unknown = [lang for lang in wanted if lang not in found]
    if unknown:
        raise ValueError(f"--languages lists {', '.join(unknown)} but {data_dir} has no such <lang>.txt; "
                         "fix the list or the directory.")
    pivot_lines = read_lines(data_dir / f"{pivot}.txt", "utf-8")
    pairs = {}
    for lang in wanted:
        lines = read_lines(data_dir / f"{lang}.txt", "utf-8")
        if len(lines) != len(pivot_lines):
            raise ValueError(f"{data_dir / (lang + '.txt')} has {len(lines)} lines but {pivot}.txt has "
                             f"{len(pivot_lines)}; aligned files must match line by line.")
        kept = [(x, y) for x, y in zip(lines, pivot_lines) if x.strip() and y.strip()]
        pairs[lang] = ([x for x, _ in kept], [y for _, y in kept])
    return pairs


def read_tatoeba(data_dir, languages: Optional[Sequence[str]] = None) -> Pairs:
    """{xx: (xx lines, English lines)} from XTREME's `tatoeba.<xx>-eng.<xx>` and `tatoeba.<xx>-eng.eng`."""
    data_dir = Path(data_dir)
    found = sorted(p.name[len("tatoeba."):-len("-eng.eng")] for p in data_dir.glob("tatoeba.*-eng.eng"))
    unknown = [lang for lang in (languages or []) if lang not in found]
    if unknown or not found:
        raise ValueError(f"no Tatoeba pair tatoeba.<xx>-eng.{{<xx>,eng}} in {data_dir} for "
                         f"{', '.join(unknown) or 'any language'} (found: {', '.join(found) or 'none'}).")
    pairs = {}
    for lang in languages or found:
        xs = read_lines(data_dir / f"tatoeba.{lang}-eng.{lang}", "utf-8")
        ys = read_lines(data_dir / f"tatoeba.{lang}-eng.eng", "utf-8")
        if len(xs) != len(ys):
            raise ValueError(f"tatoeba.{lang}-eng.{lang} has {len(xs)} lines but tatoeba.{lang}-eng.eng has {len(ys)}.")
        pairs[lang] = (xs, ys)
    return pairs


def parse_layers(value: str, num_layers: int) -> List[int]:
    """'all' -> [0..num_layers]; '7' or '0,7,12' -> those, checked to exist."""
    if value == "all":
        return list(range(num_layers + 1))
    layers = sorted({int(v) for v in value.split(",") if v.strip()})
    bad = [layer for layer in layers if not 0 <= layer <= num_layers]
    if bad or not layers:
        raise ValueError(f"--layers {value!r}: the model has layers 0 (embeddings) to {num_layers}; "
                         f"got {bad or 'none'}.")
    return layers


# --------------------------------------------------------------------------- embeddings


@torch.no_grad()
def embed_sentences(hub, sentences: Sequence[str], layers: Sequence[int], pooling: str = "mean",
                    batch_size: int = 32) -> Dict[int, torch.Tensor]:
    """{layer: `(num_sentences, dim)` float32 CPU embeddings}; every layer from one forward pass per batch."""
    from fairseq.data import data_utils

    max_tokens = hub.model.max_positions()
    encoded = []
    for sentence in sentences:
        tokens = hub.encode(sentence)
        if len(tokens) > max_tokens:  # keep <s> ... and the closing </s>
            tokens = torch.cat([tokens[:max_tokens - 1], tokens[-1:]])
        encoded.append(tokens)
    pad = hub.dictionary.pad()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths batch together
    out = {layer: [None] * len(encoded) for layer in layers}
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        tokens = data_utils.collate_tokens([encoded[i] for i in rows], pad).to(hub.device)
        _, extra = hub.model(tokens, features_only=True, return_all_hiddens=True)
        mask = tokens.ne(pad)
        for layer in layers:
            pooled = pool_sequence(extra["inner_states"][layer].transpose(0, 1), mask, pooling).float().cpu()
            for row, index in enumerate(rows):
                out[layer][index] = pooled[row]
    return {layer: torch.stack(vectors) if vectors else torch.empty(0) for layer, vectors in out.items()}


Embedder = Callable[[Sequence[str], Sequence[str]], Tuple[Dict[int, torch.Tensor], Dict[int, torch.Tensor]]]


def model_embedder(hub, layers: Sequence[int], pooling: str = "mean", batch_size: int = 32) -> Embedder:
    """(xs, ys) -> their {layer: embeddings} from the model's states."""
    return lambda xs, ys: (embed_sentences(hub, xs, layers, pooling, batch_size),
                           embed_sentences(hub, ys, layers, pooling, batch_size))


def lexical_embedder(spm_model: Path) -> Embedder:
    """(xs, ys) -> {0: binary bags of SentencePiece pieces} over the pieces either side uses (no model)."""
    import sentencepiece

    if not spm_model.is_file():
        raise FileNotFoundError(f"--pooling lexical reads {spm_model}; put the SentencePiece model of the "
                                f"vocabulary to compare there (it sits beside model.pt in an XLM-R model dir).")
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))

    def embed(xs, ys):
        sides = [[set(processor.encode(sentence)) for sentence in side] for side in (xs, ys)]
        column = {piece: i for i, piece in enumerate(sorted(set().union(*sides[0], *sides[1])))}
        bags = []
        for side in sides:
            bag = torch.zeros(len(side), max(len(column), 1))
            for row, pieces in enumerate(side):
                bag[row, [column[piece] for piece in pieces]] = 1.0
            bags.append({0: bag})
        return bags[0], bags[1]

    return embed


# --------------------------------------------------------------------------- scoring


def normalize(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _use_faiss(backend: str, num_queries: int, num_keys: int) -> bool:
    if backend == "torch":
        return False
    try:
        import faiss  # noqa: F401
    except ImportError:
        if backend == "faiss":
            raise ValueError("--backend faiss needs `pip install faiss-cpu` (or faiss-gpu); use --backend torch "
                             "or auto.") from None
        return False
    return backend == "faiss" or num_queries * num_keys >= FAISS_MIN_PAIRS


def knn(queries: torch.Tensor, keys: torch.Tensor, k: int, backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """k nearest keys of each query by inner product (cosine for normalised inputs).

    queries `(n, dim)`, keys `(m, dim)` -> (similarities `(n, k)` descending, indices `(n, k)`); k is
    capped at m.
    """
    k = min(k, len(keys))
    if _use_faiss(backend, len(queries), len(keys)):
        import faiss

        index = faiss.IndexFlatIP(keys.shape[1])
        index.add(keys.float().contiguous().numpy())
        sims, indices = index.search(queries.float().contiguous().numpy(), k)
        return torch.from_numpy(sims), torch.from_numpy(indices).long()
    sims, indices = [], []
    for start in range(0, len(queries), BLOCK_ROWS):
        block = queries[start:start + BLOCK_ROWS] @ keys.T  # (block, m)
        top = block.topk(k, dim=1)
        sims.append(top.values)
        indices.append(top.indices)
    return torch.cat(sims), torch.cat(indices)


def ratio_margin_matrix(x: torch.Tensor, y: torch.Tensor, k: int = 4) -> torch.Tensor:
    """Full `(n, m)` ratio-margin scores of normalised x `(n, dim)` against y `(m, dim)` (small inputs)."""
    cos = x @ y.T
    r_x = cos.topk(min(k, len(y)), dim=1).values.mean(1)  # Σ_{z∈NN_k(x)} cos(x, z) / k
    r_y = cos.topk(min(k, len(x)), dim=0).values.mean(0)
    return cos / ((r_x[:, None] + r_y[None, :]) / 2)


def retrieve(x: torch.Tensor, y: torch.Tensor, scoring: str = "cosine", k: int = 4,
             backend: str = "auto") -> torch.Tensor:
    """For each row of normalised x, the index of its match in normalised y: `(n,)`."""
    if scoring == "cosine":
        return knn(x, y, 1, backend)[1][:, 0]
    sims_xy, candidates = knn(x, y, k, backend)  # (n, k)
    r_x = sims_xy.mean(1)
    r_y = knn(y, x, k, backend)[0].mean(1)  # (m,)
    margin = sims_xy / ((r_x[:, None] + r_y[candidates]) / 2)
    return candidates.gather(1, margin.argmax(1, keepdim=True))[:, 0]


def accuracy(x: torch.Tensor, y: torch.Tensor, scoring: str = "cosine", k: int = 4, backend: str = "auto") -> float:
    """Percent of rows i of x whose retrieved row of y is i (aligned inputs)."""
    predicted = retrieve(normalize(x), normalize(y), scoring, k, backend)
    return 100.0 * int((predicted == torch.arange(len(x))).sum()) / len(x)


def evaluate_pairs(embed: Embedder, pairs: Pairs, layers: Sequence[int], pooling: str = "mean",
                   k: int = 4, backend: str = "auto", centered: bool = False) -> Dict:
    """Accuracy per scoring, language, direction and layer of `embed` (`model_embedder`, `lexical_embedder`):
    {"layers", "pooling", "margin_k", "centered", "sizes": {lang: n}, "accuracy": {scoring: {lang: {"to_pivot":
    [per layer], "from_pivot": [...]}}}}. `centered`: each side minus its own mean embedding (`center_columns`)."""
    results = {"layers": list(layers), "pooling": pooling, "margin_k": k, "centered": centered, "sizes": {},
               "accuracy": {scoring: {} for scoring in SCORINGS}}
    for lang, (xs, ys) in pairs.items():
        if not xs:
            logger.warning("%s: no sentence pairs left; skipped", lang)
            continue
        ex, ey = embed(xs, ys)
        if centered:
            ex = {layer: center_columns(states) for layer, states in ex.items()}
            ey = {layer: center_columns(states) for layer, states in ey.items()}
        results["sizes"][lang] = len(xs)
        for scoring in SCORINGS:
            results["accuracy"][scoring][lang] = {
                "to_pivot": [accuracy(ex[layer], ey[layer], scoring, k, backend) for layer in layers],
                "from_pivot": [accuracy(ey[layer], ex[layer], scoring, k, backend) for layer in layers],
            }
    return results


# --------------------------------------------------------------------------- outputs


def write_outputs(out_dir: Path, results: Dict, name: str, seed: int, report_layer: int, scoring: str) -> None:
    from fairseq_xlmr.evaluation.results import write_results

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "retrieval.json", results)
    plot_layers(results, scoring, out_dir / "retrieval.png")
    at = results["layers"].index(report_layer)
    accuracies = results["accuracy"][scoring]
    write_results(out_dir, name, seed, "accuracy", {lang: acc["to_pivot"][at] for lang, acc in accuracies.items()},
                  split="test", extra={"layer": report_layer, "pooling": results["pooling"], "scoring": scoring,
                                       "direction": f"xx->{results.get('pivot', 'pivot')}",
                                       "from_pivot": {lang: acc["from_pivot"][at] for lang, acc in accuracies.items()}})


def plot_layers(results: Dict, scoring: str, path: Path) -> None:
    """Accuracy (mean of both directions) per layer: one line per language and their mean in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = results["layers"]
    accuracies = results["accuracy"][scoring]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = []
    for lang, acc in accuracies.items():
        curve = [(a + b) / 2 for a, b in zip(acc["to_pivot"], acc["from_pivot"])]
        curves.append(curve)
        many = len(accuracies) > 12
        ax.plot(layers, curve, lw=0.6 if many else 1.2, alpha=0.35 if many else 0.9, label=None if many else lang)
    if curves:
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(len(layers))]
        ax.plot(layers, mean, color="black", lw=2.5, label=f"mean of {len(curves)} languages")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"retrieval accuracy, {scoring} (%)")
    ax.set_title(f"Parallel sentence retrieval per layer ({results['pooling']} pooling)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
