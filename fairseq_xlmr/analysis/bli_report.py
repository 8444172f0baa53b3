"""`xlmr analyze bli`: word translation (MUSE; Conneau, Wu et al., 2020, §4) from input embeddings or a layer's
contextual states, with nearest-neighbour and CSLS retrieval, identity vs Procrustes vs refined maps; writes bli.json,
bli.md and a bar plot.
"""

from pathlib import Path
from typing import Dict, List, Sequence

import torch

from fairseq_xlmr.analysis import bli, features
from fairseq_xlmr.files import read_lines, write_atomic, write_json
from fairseq_xlmr.tables import markdown_table


def run_bli(args) -> str:
    for name in ("train_words", "test_words", "csls_k"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
    if args.refine_iters < 0:
        raise ValueError(f"--refine-iters must be >= 0, got {args.refine_iters}; MUSE refines 5 times.")
    if args.embeddings == "contextual":
        if not args.corpus_dir:
            raise ValueError("--embeddings contextual needs --corpus-dir with <src>.txt and <tgt>.txt "
                             "(e.g. corpus/mono); or use --embeddings input.")
        missing = [lang for lang in (args.src, args.tgt) if not (Path(args.corpus_dir) / f"{lang}.txt").is_file()]
        if missing:
            raise ValueError(f"--corpus-dir {args.corpus_dir} has no {', '.join(m + '.txt' for m in missing)} for "
                             "--embeddings contextual; point it at monolingual <lang>.txt files (corpus/mono).")
        if args.max_sentences < 1:
            raise ValueError(f"--max-sentences must be >= 1, got {args.max_sentences}.")
    train, test = features.load_dictionaries(args.dictionary, args.src, args.tgt, args.train_words, args.test_words)
    if not train or not test:
        raise ValueError(f"--dictionary {args.dictionary}: {len(train)} training and {len(test)} test pairs for "
                         f"{args.src}-{args.tgt}; both splits need pairs.")
    hub_a, hub_b = features.load_hubs(args.model_a, args.model_b, args.cpu)
    src_words = list(dict.fromkeys([s for s, _ in train] + [s for s, _ in test]))  # frequency order
    tgt_words = list(dict.fromkeys([t for _, t in train] + [t for _, t in test]))
    layers = (resolve_layer(args.layer, hub_a), resolve_layer(args.layer, hub_b))
    src_vecs, src_found = word_vectors(args, hub_a, src_words, args.src, layers[0])
    tgt_vecs, tgt_found = word_vectors(args, hub_b, tgt_words, args.tgt, layers[1])
    # Words missing from the corpus (contextual) leave both pools; queries whose gold words all left are dropped.
    src_words = [w for w, ok in zip(src_words, src_found) if ok]
    tgt_words = [w for w, ok in zip(tgt_words, tgt_found) if ok]
    src_vecs = bli.normalize_embeddings(src_vecs[torch.tensor(src_found, dtype=torch.bool)])
    tgt_vecs = bli.normalize_embeddings(tgt_vecs[torch.tensor(tgt_found, dtype=torch.bool)])
    src_index = {w: i for i, w in enumerate(src_words)}
    tgt_index = {w: i for i, w in enumerate(tgt_words)}
    train_pairs = [(src_index[s], tgt_index[t]) for s, t in train if s in src_index and t in tgt_index]
    gold: Dict[int, List[int]] = {}
    for s, t in test:
        if s in src_index and t in tgt_index:
            gold.setdefault(src_index[s], []).append(tgt_index[t])
    if len(train_pairs) < 2 or not gold:
        raise ValueError(f"only {len(train_pairs)} training pairs and {len(gold)} test words have vectors; "
                         "with --embeddings contextual give a larger --corpus-dir or --max-sentences.")
    queries = sorted(gold)
    results, refine_sizes = bli.evaluate_maps(src_vecs, tgt_vecs, train_pairs, gold, args.refine_iters, args.csls_k)
    result = {"src": args.src, "tgt": args.tgt, "model_a": str(args.model_a), "model_b": str(args.model_b or args.model_a),
              "embeddings": args.embeddings,
              "layer": (layers[0] if layers[0] == layers[1] else list(layers)) if args.embeddings == "contextual" else None,
              "dictionary": str(args.dictionary), "train_pairs": len(train_pairs), "test_words": len(queries),
              "dictionary_pairs": {"train": len(train), "test": len(test)},
              "src_pool": len(src_words), "tgt_pool": len(tgt_words), "csls_k": args.csls_k,
              "refine_dictionary_sizes": refine_sizes, "precision": results,
              # Shared spellings (names, loanwords) are found by the identity map through shared pieces.
              "identical_gold_share": 100.0 * sum(src_words[q] in {tgt_words[t] for t in gold[q]} for q in queries)
              / len(queries)}
    out = Path(args.out_dir)
    write_json(out / "bli.json", result)
    write_atomic(out / "bli.md", bli_markdown(result))
    plot_bli(result, out / "bli.png")
    best = results.get("refined") or results["procrustes"]
    return (f"BLI {args.src}->{args.tgt} ({args.embeddings}), {len(queries)} test words among {len(tgt_words)} "
            f"targets: P@1 NN {best['nn'][1]:.1f} CSLS {best['csls'][1]:.1f} "
            f"({'refined' if 'refined' in results else 'procrustes'})")


def resolve_layer(layer: int, hub) -> int:
    """--layer as an index into the model's states: -1 is the last layer."""
    layers = features.num_layers(hub)
    if not -1 <= layer <= layers:
        raise ValueError(f"--layer {layer}: the model has layers 0 (embeddings) to {layers} (-1 = last).")
    return layers if layer == -1 else layer


def word_vectors(args, hub, words: Sequence[str], lang: str, layer: int):
    """(`(n, dim)` vectors, found flags) for `words` in `hub`, as --embeddings asks."""
    if args.embeddings == "input":
        return features.input_word_embeddings(hub, words), [True] * len(words)
    path = Path(args.corpus_dir) / f"{lang}.txt"
    sentences = [line for line in read_lines(path, "utf-8") if line.strip()][:args.max_sentences]
    return features.contextual_word_embeddings(hub, words, sentences, layer, args.batch_size, desc=f"{lang} words")


def bli_markdown(result: Dict) -> str:
    what = "input embeddings" if result["embeddings"] == "input" else f"layer {result['layer']} states"
    lines = [f"Word translation {result['src']}→{result['tgt']} from {what} (a word = mean of its SentencePiece "
             f"pieces); {result['test_words']} test words, {result['tgt_pool']} candidate targets, "
             f"map fitted on {result['train_pairs']} pairs; precision@k in %. "
             f"{result['identical_gold_share']:.1f}% of test words have themselves among their translations.", ""]
    rows = []
    for mapping, by_scoring in result["precision"].items():
        if by_scoring is None:
            continue
        for scoring, precision in by_scoring.items():
            label = "NN" if scoring == "nn" else f"CSLS (k={result['csls_k']})"
            rows.append([mapping, label] + [f"{precision[k]:.1f}" for k in (1, 5, 10)])
    lines += markdown_table(["map", "retrieval", "P@1", "P@5", "P@10"], rows)
    return "\n".join(lines) + "\n"


def plot_bli(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mappings = [m for m, v in result["precision"].items() if v is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / (2 * len(mappings))
    for n, (mapping, scoring) in enumerate((m, s) for m in mappings for s in ("nn", "csls")):
        values = [result["precision"][mapping][scoring][k] for k in (1, 5, 10)]
        ax.bar([x + n * width for x in range(3)], values, width, label=f"{mapping} {scoring.upper()}")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(3)], ["P@1", "P@5", "P@10"])
    ax.set_ylabel("precision (%)")
    ax.set_title(f"BLI {result['src']}→{result['tgt']}, {result['embeddings']} embeddings", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
