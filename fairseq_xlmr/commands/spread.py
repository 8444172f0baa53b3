"""`xlmr spread`: where one results.json stands among baseline runs (e.g. K random inits): mean ± std, min, max, how
many it beats.
"""


def add_arguments(parser) -> None:
    parser.add_argument("model", help="the model's results.json, or a finetune-seeds run dir (seed<k>/results.json)")
    parser.add_argument("--baselines", nargs="+", required=True,
                        help="two or more results.json or run dirs of baseline runs (e.g. one per random init)")
    parser.add_argument("--out", default=None, help="write the Markdown table here and its numbers as .json beside it")
    parser.add_argument("--title", default=None, help="line above the table (default: the model's path)")


def main(args) -> int:
    from fairseq_xlmr.experiments import spread

    return spread.run(args)
