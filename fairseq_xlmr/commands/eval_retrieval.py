"""`xlmr eval-retrieval`: parallel-sentence retrieval accuracy per layer (Tatoeba/BUCC style) -> JSON + PNG."""

from fairseq_xlmr.files import CHECKPOINT_FILE, MODEL_DIR_FILES

# The choices of evaluation/retrieval.py (it imports torch; tests/unit/test_cli.py checks they agree).
POOLINGS = ("mean", "cls", "lexical")
SCORINGS = ("cosine", "margin")
BACKENDS = ("auto", "torch", "faiss")


def add_arguments(parser) -> None:
    parser.add_argument("--model-dir", required=True, help=" + ".join(MODEL_DIR_FILES))
    parser.add_argument("--checkpoint-file", default=CHECKPOINT_FILE, help="checkpoint file name in --model-dir")
    parser.add_argument("--data-dir", required=True, help="aligned <lang>.txt files or Tatoeba files")
    parser.add_argument("--format", choices=["aligned", "tatoeba"], default="aligned",
                        help="aligned: <lang>.txt, line i <-> line i; tatoeba: tatoeba.<xx>-eng.{<xx>,eng}")
    parser.add_argument("--languages", default=None,
                        help="comma-separated languages paired with the pivot (default: every one found)")
    parser.add_argument("--pivot", default="en", help="the language every other is matched with (aligned format)")
    parser.add_argument("--pooling", choices=POOLINGS, default="mean",
                        help="mean over tokens, the <s> state, or lexical: no model, the bag of SentencePiece "
                             "pieces (a shared-spelling baseline; layer 0 only)")
    parser.add_argument("--layers", default="all",
                        help="comma-separated layers (0 = embeddings, L = last) or 'all' (one forward pass)")
    parser.add_argument("--report-layer", type=int, default=7,
                        help="layer written to results.json (XTREME Tatoeba: 7 of 12, 13 of 24)")
    parser.add_argument("--scoring", choices=SCORINGS, default="cosine",
                        help="scoring written to results.json (both are computed): cosine (Tatoeba) or margin (BUCC)")
    parser.add_argument("--margin-k", type=int, default=4, help="neighbours k of the ratio margin")
    parser.add_argument("--center", action="store_true",
                        help="subtract each language's mean embedding per layer before scoring (Libovický et al., 2020)")
    parser.add_argument("--max-sentences", type=int, default=0, help="use at most N pairs per language (0: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="neighbour search: faiss or torch")
    parser.add_argument("--name", default="retrieval", help="benchmark name written to results.json (tatoeba, udhr)")
    parser.add_argument("--seed", type=int, default=1, help="seed written to results.json (the model's run)")
    parser.add_argument("--out-dir", required=True, help="where retrieval.json, retrieval.png, results.json go")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even if a GPU is available")


def main(args) -> int:
    from fairseq_xlmr.evaluation import retrieval

    return retrieval.run(args)
