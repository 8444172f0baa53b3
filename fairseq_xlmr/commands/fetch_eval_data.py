"""`xlmr fetch-eval-data`: download and convert real POS and sentiment sets for cross-lingual transfer."""


def add_arguments(parser) -> None:
    parser.add_argument("--out-dir", required=True, help="where pos/, sentiment/ and summary.json go")
    parser.add_argument("--cache-dir", default="~/.cache/fairseq_xlmr/downloads",
                        help="downloaded packages (pypi/), sha256-checked on every run")
    parser.add_argument("--train-size", type=int, default=3000, help="English training sentences (POS and sentiment)")
    parser.add_argument("--dev-size", type=int, default=500, help="English dev sentences (model selection)")
    parser.add_argument("--test-size", type=int, default=500,
                        help="POS test sentences per language (and English sentiment)")
    parser.add_argument("--target-dev-size", type=int, default=100,
                        help="dev sentences of the other languages (reported, not used for selection)")
    parser.add_argument("--sentiment-test-size", type=int, default=1000,
                        help="sentiment test reviews per non-English language (balanced)")


def main(args) -> int:
    from fairseq_xlmr.preprocess import eval_data

    return eval_data.run(args)
