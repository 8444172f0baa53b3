"""`xlmr analyze {cka,bli,align,retrieve,probe}`: the analyses of Conneau, Wu et al. (2020), "Emerging
Cross-lingual Structure in Pretrained Language Models", on model directories; each writes <name>.json,
<name>.md and a PNG.

    xlmr analyze cka --model-a demo/release --lang-a en --lang-b de --data-dir demo/corpus/udhr --out-dir cka/
    xlmr analyze bli --model-a demo/release --src en --tgt de --dictionary dicts/ --out-dir bli/
    xlmr analyze align --model-a mono_en/ --model-b mono_de/ --src en --tgt de --data-dir para/ --out-dir align/
    xlmr analyze retrieve --model-dir demo/release --data-dir demo/corpus/udhr --out-dir retrieval/
    xlmr analyze probe --model-a demo/release --model-b random_init/ --data-dir eval_data/sentiment --out-dir probe/
"""

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from fairseq_xlmr.analysis import align, bli, cka, features, probe
from fairseq_xlmr.evaluation import retrieval
from fairseq_xlmr.files import MODEL_DIR_FILES, parse_list, read_lines, write_atomic
from fairseq_xlmr.tables import markdown_table

logger = logging.getLogger(__name__)

RBF_MAX_SENTENCES = 5_000  # float64 n x n Gram, distance and centred matrices: about 1 GB at this size

ANALYSES = {
    "cka": "CKA (linear or RBF) between the layers of two models, or of two languages in one model -> layer x layer heatmap",
    "bli": "word translation (MUSE): P@1/5/10 with NN and CSLS, identity vs Procrustes vs refined",
    "align": "sentence retrieval per layer before/after a linear map between two models' spaces",
    "retrieve": "parallel-sentence retrieval per layer (same as `xlmr eval-retrieval`)",
    "probe": "linear probe per layer on frozen mean-pooled states: fit on one language's labelled sentences, "
             "score every other language, raw and centred",
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    p = {name: sub.add_parser(name, help=text, description=text) for name, text in ANALYSES.items()}

    def common(q, two_required: bool = False):
        q.add_argument("--model-a", required=True, help="model dir: " + " + ".join(MODEL_DIR_FILES))
        q.add_argument("--model-b", required=two_required,
                       help="second model dir" + ("" if two_required else " (default: --model-a)"))
        q.add_argument("--out-dir", required=True, help="where the .json, .md and .png go")
        q.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass")
        q.add_argument("--cpu", action="store_true", help="run on CPU even if a GPU is available")

    common(p["cka"])
    p["cka"].add_argument("--lang-a", default="en", help="language read by model A")
    p["cka"].add_argument("--lang-b", default="de",
                          help="language read by model B (its lines translate lang-a's); a comma list runs each "
                               "into OUT_DIR/<lang>")
    p["cka"].add_argument("--data-dir", required=True,
                          help="aligned <lang>.txt files (corpus/udhr) or <a>-<b>.{a,b} files (corpus/para)")
    p["cka"].add_argument("--kernel", choices=cka.KERNELS, default="linear", help="CKA kernel")
    p["cka"].add_argument("--sigma-fraction", type=float, default=0.5,
                          help="RBF width as a fraction of the median distance between sentences")
    p["cka"].add_argument("--max-lines", type=int, default=2000, help="use at most N sentence pairs (0: all)")
    p["cka"].add_argument("--report-layer", type=int, default=None,
                          help="with --name: the layer whose same-layer CKA goes to results.json (default: the middle)")

    common(p["bli"])
    p["bli"].add_argument("--src", default="en", help="source language (read by model A)")
    p["bli"].add_argument("--tgt", default="de",
                          help="target language (read by model B); a comma list runs each into OUT_DIR/<lang>")
    p["bli"].add_argument("--dictionary", required=True,
                          help="`xlmr fetch-dictionaries` dir (<src>-<tgt>.0-5000.txt + .5000-6500.txt) or one "
                               "MUSE file ordered by source frequency, split by rank")
    p["bli"].add_argument("--embeddings", choices=("input", "contextual"), default="input",
                          help="input: mean input-embedding row of a word's pieces; contextual: a layer's states "
                               "of its pieces averaged over its occurrences in --corpus-dir")
    p["bli"].add_argument("--corpus-dir", default=None, help="contextual: monolingual <lang>.txt files (corpus/mono)")
    p["bli"].add_argument("--layer", type=int, default=-1, help="contextual: layer (0 = embeddings; -1 = last)")
    p["bli"].add_argument("--max-sentences", type=int, default=20000,
                          help="contextual: read at most N corpus lines per language")
    p["bli"].add_argument("--refine-iters", type=int, default=5,
                          help="Procrustes refinement rounds on mutual CSLS nearest neighbours (0: none)")
    p["bli"].add_argument("--csls-k", type=int, default=10, help="neighbours k of CSLS (MUSE: 10)")
    p["bli"].add_argument("--train-words", type=int, default=5000, help="source words of the training split")
    p["bli"].add_argument("--test-words", type=int, default=1500, help="source words of the test split")
    p["bli"].add_argument("--report-map", choices=("identity", "procrustes", "refined"), default="identity",
                          help="with --name: the map whose CSLS P@1 goes to results.json (identity: the model's own "
                               "space, no bilingual supervision)")
    for name in ("cka", "bli"):
        p[name].add_argument("--name", default=None,
                             help="also write OUT_DIR/results.json (for `xlmr report`) under this benchmark name, "
                                  "one value per language")

    common(p["align"], two_required=True)
    p["align"].add_argument("--src", default="en", help="language read by model A")
    p["align"].add_argument("--tgt", default="de", help="language read by model B")
    p["align"].add_argument("--data-dir", required=True, help="parallel text, as for cka")
    p["align"].add_argument("--map", choices=align.MAPS, default="orthogonal",
                            help="orthogonal (Procrustes) or linear (least squares) map from A's space to B's")
    p["align"].add_argument("--train-lines", type=int, default=0,
                            help="first N pairs fit the map, the rest test it (0: half)")
    p["align"].add_argument("--max-lines", type=int, default=2000, help="use at most N sentence pairs (0: all)")

    retrieval.add_arguments(p["retrieve"])

    common(p["probe"])
    p["probe"].add_argument("--data-dir", required=True,
                            help="<lang>/<split>.tsv files with a header (the layout of `xlmr fetch-eval-data`'s "
                                 "sentiment/ and of finetune_*.sh data)")
    p["probe"].add_argument("--train-lang", default="en", help="language whose --train-split fits the probe")
    p["probe"].add_argument("--test-langs", default=None,
                            help="comma list of languages scored on --test-split (default: every <lang>/ dir that "
                                 "has one)")
    p["probe"].add_argument("--train-split", default="train", help="file name (without .tsv) the probe is fitted on")
    p["probe"].add_argument("--test-split", default="test", help="file name (without .tsv) each language is scored on")
    p["probe"].add_argument("--text-column", default="sentence1", help="tsv column of the sentence")
    p["probe"].add_argument("--label-column", default="label", help="tsv column of the label")
    p["probe"].add_argument("--C", type=float, default=1.0, dest="c",
                            help="inverse L2 strength of the logistic regression (scikit-learn's C)")
    p["probe"].add_argument("--random-inits", type=int, default=0,
                            help="also probe K random-init twins of --model-a (`xlmr random-init` seeds 1..K, "
                                 "built in a temp dir) and report where model A stands among them: their mean, "
                                 "std, min, max and how many A beats, per layer and language (0: none)")


def main(args) -> int:
    start = time.time()
    if args.analysis == "retrieve":
        return retrieval.main(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}.")
    run = {"cka": run_cka, "bli": run_bli, "align": run_align, "probe": run_probe}[args.analysis]
    field = {"cka": "lang_b", "bli": "tgt"}.get(args.analysis)
    summary = run_per_language(args, run, field) if field else run(args)
    print(f"{summary}\nwrote {args.out_dir} in {time.time() - start:.0f}s")
    return 0


def run_per_language(args, run, field: str) -> str:
    """`run` once per language of the comma list in `args.<field>` (into OUT_DIR/<lang> when there are several);
    with --name, OUT_DIR/results.json holds each language's reported value (`reported_value`)."""
    from fairseq_xlmr.evaluation.results import write_results

    languages = parse_list(getattr(args, field), "--" + field.replace("_", "-"))
    out, summaries, values = Path(args.out_dir), [], {}
    for lang in languages:
        one = argparse.Namespace(**{**vars(args), field: lang,
                                    "out_dir": str(out / lang) if len(languages) > 1 else args.out_dir})
        summaries.append(run(one))
        values[lang] = reported_value(args, Path(one.out_dir))
    if args.name:
        what = ("identity-map CSLS P@1" if args.analysis == "bli" and args.report_map == "identity" else
                f"{args.report_map} CSLS P@1" if args.analysis == "bli" else "linear CKA")
        write_results(out, args.name, 1, "accuracy" if args.analysis == "bli" else "cka",
                      {lang: value for lang, (value, _) in values.items()}, extra={
                          "measure": what, "layer": next(iter(values.values()))[1]})
    return "\n".join(summaries)


def reported_value(args, out_dir: Path):
    """(the value results.json reports, its layer) of one finished bli or cka run in `out_dir`."""
    if args.analysis == "bli":
        result = json.loads((out_dir / "bli.json").read_text())
        return result["precision"][args.report_map]["csls"]["1"], result["layer"]
    result = json.loads((out_dir / "cka.json").read_text())
    layer = len(result["diagonal"]) // 2 if args.report_layer is None else args.report_layer
    if not 0 <= layer < len(result["diagonal"]):
        raise ValueError(f"--report-layer {layer}: the models have layers 0..{len(result['diagonal']) - 1}.")
    return result["diagonal"][layer], layer


def _hubs(args):
    hub_a = features.load_hub(args.model_a, args.cpu)
    same = args.model_b is None or Path(args.model_b).resolve() == Path(args.model_a).resolve()
    return hub_a, hub_a if same else features.load_hub(args.model_b, args.cpu)


# --------------------------------------------------------------------------- cka


def run_cka(args) -> str:
    if args.max_lines < 0 or args.sigma_fraction <= 0:
        raise ValueError(f"--max-lines must be >= 0 (got {args.max_lines}) and --sigma-fraction > 0 "
                         f"(got {args.sigma_fraction}); Kornblith et al. use 0.5 of the median distance.")
    if args.model_b is None and args.lang_a == args.lang_b:
        raise ValueError(f"--lang-a and --lang-b are both {args.lang_a!r} with one model: CKA would be 1 everywhere. "
                         "Give two languages, or a second model with --model-b.")
    xs, ys = features.read_parallel(args.data_dir, args.lang_a, args.lang_b, args.max_lines)
    if args.kernel == "rbf" and len(xs) > RBF_MAX_SENTENCES:
        raise ValueError(f"--kernel rbf builds {len(xs)} x {len(xs)} Gram matrices; keep --max-lines <= "
                         f"{RBF_MAX_SENTENCES} (got {len(xs)} pairs) or use --kernel linear, which has no such limit.")
    hub_a, hub_b = _hubs(args)
    states_a = features.sentence_states(hub_a, xs, args.batch_size)
    states_b = features.sentence_states(hub_b, ys, args.batch_size)
    matrix = cka.cka_matrix(states_a, states_b, args.kernel, args.sigma_fraction)
    diagonal = [matrix[i][i] for i in range(min(len(matrix), len(matrix[0])))]
    # Chance level: the same layers with B's sentences in a fixed random order (pairs no longer parallel).
    shuffle = torch.randperm(len(ys), generator=torch.Generator().manual_seed(0))
    shuffled = [cka.cka(states_a[layer], states_b[layer][shuffle], args.kernel, args.sigma_fraction)
                for layer in sorted(states_a)[:len(diagonal)]]
    result = {"kernel": args.kernel, "model_a": str(args.model_a), "model_b": str(args.model_b or args.model_a),
              "lang_a": args.lang_a, "lang_b": args.lang_b, "sentences": len(xs),
              "sigma_fraction": args.sigma_fraction if args.kernel == "rbf" else None,
              "layers_a": sorted(states_a), "layers_b": sorted(states_b), "matrix": matrix, "diagonal": diagonal,
              "diagonal_shuffled": shuffled}
    out = Path(args.out_dir)
    write_atomic(out / "cka.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / "cka.md", cka_markdown(result))
    plot_heatmap(result, out / "cka.png")
    return (f"{args.kernel} CKA, same layer, {args.lang_a} vs {args.lang_b}: " + " ".join(f"{v:.3f}" for v in diagonal)
            + "  (unpaired: " + " ".join(f"{v:.3f}" for v in shuffled) + ")")


def cka_markdown(result: Dict) -> str:
    a = f"A: {Path(result['model_a']).name} ({result['lang_a']})"
    b = f"B: {Path(result['model_b']).name} ({result['lang_b']})"
    lines = [f"{result['kernel'].capitalize()} CKA on {result['sentences']} parallel sentences, rows {a}, "
             f"columns {b} (layer 0 = embeddings).", ""]
    rows = [[f"A{i}"] + [f"{v:.3f}" for v in row] for i, row in zip(result["layers_a"], result["matrix"])]
    lines += markdown_table(["layer"] + [f"B{j}" for j in result["layers_b"]], rows)
    lines += ["", "Same layer, parallel pairs vs the same sentences unpaired (B shuffled: chance level).", ""]
    lines += markdown_table(["layer", "parallel", "shuffled"],
                            [[str(layer), f"{p:.3f}", f"{q:.3f}"] for layer, p, q in
                             zip(result["layers_a"], result["diagonal"], result["diagonal_shuffled"])])
    return "\n".join(lines) + "\n"


def plot_heatmap(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = result["matrix"]
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(matrix[0]), 1.0 + 0.6 * len(matrix)))
    image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis", origin="lower")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 0.6 else "white")
    ax.set_xticks(range(len(result["layers_b"])), result["layers_b"])
    ax.set_yticks(range(len(result["layers_a"])), result["layers_a"])
    ax.set_xlabel(f"layer of {Path(result['model_b']).name} on {result['lang_b']}")
    ax.set_ylabel(f"layer of {Path(result['model_a']).name} on {result['lang_a']}")
    ax.set_title(f"{result['kernel']} CKA, {result['sentences']} sentences", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- bli


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
    hub_a, hub_b = _hubs(args)
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
    write_atomic(out / "bli.json", json.dumps(result, indent=1) + "\n")
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


# --------------------------------------------------------------------------- align


def run_align(args) -> str:
    if args.max_lines < 0 or args.train_lines < 0:
        raise ValueError(f"--max-lines ({args.max_lines}) and --train-lines ({args.train_lines}) must be >= 0.")
    xs, ys = features.read_parallel(args.data_dir, args.src, args.tgt, args.max_lines)
    train = args.train_lines or len(xs) // 2
    if not 2 <= train <= len(xs) - 2:
        raise ValueError(f"--train-lines {train} of {len(xs)} pairs: need >= 2 to fit the map and >= 2 held apart "
                         "to test it; lower --train-lines or give more parallel text.")
    hub_a, hub_b = _hubs(args)
    states_a = features.sentence_states(hub_a, xs, args.batch_size)
    states_b = features.sentence_states(hub_b, ys, args.batch_size)
    curves = align.per_layer(states_a, states_b, train, args.map)
    result = {"src": args.src, "tgt": args.tgt, "model_a": str(args.model_a), "model_b": str(args.model_b),
              "map": args.map, "train_pairs": train, "test_pairs": len(xs) - train, **curves}
    out = Path(args.out_dir)
    write_atomic(out / "align.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / "align.md", align_markdown(result))
    plot_align(result, out / "align.png")
    best = max(range(len(curves["layers"])), key=lambda n: curves["after"][n])
    return (f"{args.map} map {args.src}->{args.tgt}: best layer {curves['layers'][best]} retrieval "
            f"{curves['after'][best]:.1f}% after the map ({_fmt(curves['before'][best])}% before), "
            f"{len(xs) - train} held-apart pairs")


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def align_markdown(result: Dict) -> str:
    lines = [f"Sentence retrieval {result['src']}→{result['tgt']} (accuracy %, cosine, mean-pooled layer states) "
             f"of {Path(result['model_a']).name} against {Path(result['model_b']).name}, before and after a "
             f"{result['map']} map fitted on {result['train_pairs']} pairs; {result['test_pairs']} held-apart pairs.",
             ""]
    rows = [[str(layer)] + [_fmt(result[key][n]) for key in ("before", "after", "before_reverse", "after_reverse")]
            for n, layer in enumerate(result["layers"])]
    lines += markdown_table(["layer", "before", "after", "before (reverse)", "after (reverse)"], rows)
    return "\n".join(lines) + "\n"


def plot_align(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    layers = result["layers"]
    ax.plot(layers, result["after"], marker="o", label=f"after {result['map']} map")
    if result["before"][0] is not None:
        ax.plot(layers, result["before"], marker="o", ls="--", label="before (identity)")
    ax.set_xticks(layers)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel(f"retrieval accuracy {result['src']}→{result['tgt']} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{Path(result['model_a']).name} vs {Path(result['model_b']).name}, "
                 f"{result['test_pairs']} test pairs", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- probe


def read_probe_data(args):
    """(train examples, {test language: examples}) from --data-dir; every problem is reported before any
    model is loaded: missing files, fewer than two training labels, test labels the training split lacks."""
    from fairseq_xlmr.data.readers import read_labelled_tsv

    if args.c <= 0:
        raise ValueError(f"--C must be > 0, got {args.c}; 1.0 is scikit-learn's default.")
    root = Path(args.data_dir)
    train_file = root / args.train_lang / f"{args.train_split}.tsv"
    if not train_file.is_file():
        raise ValueError(f"no training file {train_file}: --data-dir needs <train-lang>/<train-split>.tsv "
                         f"(e.g. `xlmr fetch-eval-data`'s sentiment/en/train.tsv); fix --data-dir or --train-lang.")
    if args.test_langs:
        langs = parse_list(args.test_langs, "--test-langs")
    else:
        langs = sorted(d.name for d in root.iterdir() if (d / f"{args.test_split}.tsv").is_file())
    if not langs:
        raise ValueError(f"no <lang>/{args.test_split}.tsv under {root}; fix --data-dir, --test-langs or --test-split.")
    missing = [str(root / lang / f"{args.test_split}.tsv") for lang in langs
               if not (root / lang / f"{args.test_split}.tsv").is_file()]
    if missing:
        raise ValueError(f"--test-langs {','.join(langs)}: no test file {', '.join(missing)}; each language needs "
                         f"<lang>/{args.test_split}.tsv under --data-dir.")

    def read(path, lang):
        return read_labelled_tsv(path, args.text_column, args.label_column, language=lang)

    train = read(train_file, args.train_lang)
    labels = sorted({e.label for e in train})
    if len(labels) < 2:
        raise ValueError(f"{train_file}: {len(train)} rows with labels {labels}; a probe needs at least two labels.")
    tests = {}
    for lang in langs:
        tests[lang] = read(root / lang / f"{args.test_split}.tsv", lang)
        unseen = sorted({e.label for e in tests[lang]} - set(labels))
        if unseen:
            raise ValueError(f"{root / lang / (args.test_split + '.tsv')}: labels {unseen} are not in the training "
                             f"split ({labels}); the probe could never predict them. Fix the file or --label-column.")
    return train, tests


def probe_model(args, model_dir, train, tests, desc: str) -> Dict:
    """probe_layers() of one model dir on the examples read by read_probe_data()."""
    hub = features.load_hub(model_dir, args.cpu).eval()
    splits = tqdm([(args.train_lang, train), *tests.items()], desc=desc, unit="file", leave=False)
    states = [(lang, features.sentence_states(hub, [e.text_a for e in rows], args.batch_size), rows)
              for lang, rows in splits]
    test_states = {lang: (vectors, [e.label for e in rows]) for lang, vectors, rows in states[1:]}
    return probe.probe_layers(states[0][1], [e.label for e in train], test_states, args.c)


def run_probe(args) -> str:
    import tempfile

    from fairseq_xlmr.experiments.random_init import write_random_init

    if args.random_inits < 0 or args.random_inits == 1:
        raise ValueError(f"--random-inits must be 0 or >= 2 (a spread needs two), got {args.random_inits}.")
    train, tests = read_probe_data(args)
    models = {"a": args.model_a}
    if args.model_b is not None:
        models["b"] = args.model_b
    result = {"data_dir": str(args.data_dir), "train_lang": args.train_lang, "train_split": args.train_split,
              "test_split": args.test_split, "C": args.c, "pooling": "mean",
              "sentences": {"train": len(train), **{lang: len(rows) for lang, rows in tests.items()}},
              "labels": sorted({e.label for e in train}), "models": {}}
    for key, model_dir in models.items():
        result["models"][key] = {"dir": str(model_dir),
                                 **probe_model(args, model_dir, train, tests, f"probe {Path(model_dir).name}")}
    if args.random_inits:
        baselines = []
        with tempfile.TemporaryDirectory() as tmp:
            for seed in tqdm(range(1, args.random_inits + 1), desc="random inits", unit="model"):
                twin = write_random_init(args.model_a, Path(tmp) / f"seed{seed}", seed=seed).parent
                baselines.append(probe_model(args, twin, train, tests, f"random init {seed}"))
        result["random_inits"] = {"seeds": list(range(1, args.random_inits + 1)),
                                  **probe.spread(result["models"]["a"], baselines)}
    out = Path(args.out_dir)
    write_atomic(out / "probe.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / "probe.md", probe_markdown(result))
    plot_probe(result, out / "probe.png")
    others = [lang for lang in tests if lang != args.train_lang] or list(tests)
    parts = []
    for key, model in result["models"].items():
        for name in probe.FEATURES:
            by_layer = {layer: sum(model[name][layer][l]["accuracy"] for l in others) / len(others)
                        for layer in model[name]}
            best = max(by_layer, key=by_layer.get)
            parts.append(f"{key}={Path(model['dir']).name} {name}: best layer {best}, {by_layer[best]:.1f}")
    summary = f"probe {args.train_lang} -> {','.join(others)} (mean accuracy %): " + "; ".join(parts)
    if args.random_inits:
        for lang in others:
            cells = [c for name in probe.FEATURES for c in (v[lang] for v in result["random_inits"][name].values())]
            beaten = sum(c["below"] == args.random_inits for c in cells)
            summary += (f"\n{lang}: model a above all {args.random_inits} random inits in {beaten} of {len(cells)} "
                        f"(features, layer) cells")
    return summary


def probe_markdown(result: Dict) -> str:
    langs = list(next(iter(result["models"]["a"]["raw"].values())))
    first = result["labels"][0]
    lines = [f"Linear probe (logistic regression, C={result['C']}) on frozen mean-pooled layer states, fitted on "
             f"{result['sentences']['train']} {result['train_lang']} sentences ({result['train_split']}), scored on "
             f"each language's {result['test_split']} split: accuracy % (in brackets: % predicted {first!r}). "
             "Centred: each language's mean vector moved onto the training mean first. Layer 0 = embeddings.", ""]
    rows = []
    for key, model in result["models"].items():
        for name in probe.FEATURES:
            for layer, by_lang in model[name].items():
                rows.append([f"{key}: {Path(model['dir']).name}", name, str(layer)]
                            + [f"{by_lang[l]['accuracy']:.1f} ({by_lang[l]['predicted'][first]:.0f})" for l in langs])
    lines += markdown_table(["model", "features", "layer"] + langs, rows)
    spread = result.get("random_inits")
    if spread:
        k = len(spread["seeds"])
        lines += ["", f"Model a among {k} random inits of itself (`xlmr random-init` seeds 1..{k}): their accuracy "
                  f"mean ± std [min, max], then how many of the {k} model a beats.", ""]
        rows = [[name, str(layer)] + [f"{c[l]['mean']:.1f} ± {c[l]['std']:.1f} [{c[l]['min']:.1f}, {c[l]['max']:.1f}]"
                                      f" {c[l]['below']}/{k}" for l in langs]
                for name in probe.FEATURES for layer, c in spread[name].items()]
        lines += markdown_table(["features", "layer"] + langs, rows)
    return "\n".join(lines) + "\n"


def plot_probe(result: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes, probe.FEATURES):
        layers = sorted(result["models"]["a"][name])  # every model and the random inits: the same layers
        for (key, model), style in zip(result["models"].items(), ("-", "--")):
            for n, lang in enumerate(model[name][layers[0]]):
                ax.plot(layers, [model[name][layer][lang]["accuracy"] for layer in layers], style, marker="o",
                        color=colours[n % len(colours)], label=f"{lang} ({key}: {Path(model['dir']).name})")
        spread = result.get("random_inits")
        if spread:  # the random inits' mean ± std, as a band in each language's colour
            for n, lang in enumerate(spread[name][layers[0]]):
                cells = [spread[name][layer][lang] for layer in layers]
                ax.fill_between(layers, [c["mean"] - c["std"] for c in cells], [c["mean"] + c["std"] for c in cells],
                                color=colours[n % len(colours)], alpha=0.12, lw=0)
        ax.axhline(100.0 / len(result["labels"]), color="grey", lw=0.8, ls=":")
        ax.set_xticks(layers)
        ax.set_xlabel("layer (0 = embeddings)")
        band = f"; bands: {len(spread['seeds'])} random inits, mean ± std" if spread else ""
        ax.set_title(f"{name} states, probe fitted on {result['train_lang']}{band}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
