"""`xlmr analyze {cka,bli,align,retrieve,probe}`: the analyses of Conneau, Wu et al. (2020), "Emerging
Cross-lingual Structure in Pretrained Language Models", on model directories; each writes <name>.json,
<name>.md and a PNG.

    xlmr analyze cka --model-a demo/release --lang-a en --lang-b de --data-dir demo/corpus/udhr --out-dir cka/
    xlmr analyze bli --model-a demo/release --src en --tgt de --dictionary dicts/ --out-dir bli/
    xlmr analyze align --model-a mono_en/ --model-b mono_de/ --src en --tgt de --data-dir para/ --out-dir align/
    xlmr analyze retrieve --model-dir demo/release --data-dir demo/corpus/udhr --out-dir retrieval/
    xlmr analyze probe --model-a demo/release --model-b random_init/ --data-dir eval_data/sentiment --out-dir probe/
"""

from fairseq_xlmr.commands import eval_retrieval
from fairseq_xlmr.files import MODEL_DIR_FILES

# The choices of analysis/cka.py and analysis/align.py (they import torch; tests/unit/test_cli.py checks they agree).
KERNELS = ("linear", "rbf")
MAPS = ("orthogonal", "linear")

ANALYSES = {
    "cka": "CKA (linear or RBF) between the layers of two models, or of two languages in one model -> layer x layer "
           "heatmap",
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
    p["cka"].add_argument("--kernel", choices=KERNELS, default="linear", help="CKA kernel")
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
    p["align"].add_argument("--map", choices=MAPS, default="orthogonal",
                            help="orthogonal (Procrustes) or linear (least squares) map from A's space to B's")
    p["align"].add_argument("--train-lines", type=int, default=0,
                            help="first N pairs fit the map, the rest test it (0: half)")
    p["align"].add_argument("--max-lines", type=int, default=2000, help="use at most N sentence pairs (0: all)")

    eval_retrieval.add_arguments(p["retrieve"])

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
    from fairseq_xlmr.analysis import analyze

    return analyze.run(args)
