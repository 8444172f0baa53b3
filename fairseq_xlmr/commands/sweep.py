"""`xlmr sweep`: XLM-R's ablation sweeps (alpha, vocabulary, number of languages) at demo scale -> table + PNG."""

from fairseq_xlmr.experiments.sweep import PARAMS, REPO


def add_arguments(parser) -> None:
    parser.add_argument("--param", required=True, choices=PARAMS, help="what to sweep")
    parser.add_argument("--values", required=True,
                        help="comma list of values: alpha 0.01,0.3,0.7,1.0; vocab 2000,4000,8000; languages 2,4,8")
    parser.add_argument("--out-dir", required=True, help="where each run and sweep.{json,md,png} go")
    parser.add_argument("--data-bin", default=None,
                        help="data-bin of `xlmr binarize` (alpha, languages sweeps), e.g. demo/data-bin")
    parser.add_argument("--spm-dir", default=None,
                        help="sentencepiece.bpe.model + dict.txt that made --data-bin (alpha, languages)")
    parser.add_argument("--corpus-dir", default=None,
                        help="<lang>.txt files (vocab sweep: SentencePiece and binarisation per value)")
    parser.add_argument("--languages", default=None,
                        help="comma list, in order (languages sweep: value N uses the first N); default: "
                             "every language of --data-bin (or --corpus-dir), sorted, with --pivot first")
    parser.add_argument("--udhr-dir", default=None,
                        help="aligned <lang>.txt for the retrieval proxy (e.g. demo/corpus/udhr); "
                             "without it only perplexity is measured")
    parser.add_argument("--pivot", default="en", help="retrieval pivot language")
    parser.add_argument("--retrieval-layer", type=int, default=-1,
                        help="layer reported for retrieval (-1: the middle layer, num_layers // 2)")
    parser.add_argument("--max-update", type=int, default=300, help="training updates per run")
    parser.add_argument("--warmup-updates", type=int, default=-1,
                        help="lr warmup per run (-1: 10%% of --max-update, as the demo's 150 of 1500)")
    parser.add_argument("--seed", type=int, default=1, help="training seed of every run")
    parser.add_argument("--config-dir", default=str(REPO / "hydra_configs" / "pretrain"),
                        help="fairseq-hydra-train config dir")
    parser.add_argument("--config-name", default="demo", help="the recipe every run shares (demo.yaml)")
    parser.add_argument("--override", action="append", default=[],
                        help="extra hydra override for every run, e.g. dataset.batch_size=16 (repeatable)")
    parser.add_argument("--spm-sample-sentences", type=int, default=100_000,
                        help="vocab sweep: sentences sampled for each SentencePiece model (demo: 100000)")
    parser.add_argument("--valid-lines", type=int, default=300,
                        help="vocab sweep: validation sentences per language when binarising (demo: 300)")
    parser.add_argument("--workers", type=int, default=1, help="vocab sweep: binarisation workers")
    parser.add_argument("--cpu", action="store_true", help="train and evaluate on CPU even with a GPU")


def main(args) -> int:
    from fairseq_xlmr.experiments import sweep

    return sweep.run(args)
