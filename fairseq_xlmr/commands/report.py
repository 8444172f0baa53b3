"""`xlmr report`: results.json files -> the paper's Tables 1-3 in Markdown + PNG bar plots."""


def add_arguments(parser) -> None:
    parser.add_argument("--results-dir", required=True, help="searched recursively for results.json files")
    parser.add_argument("--out-dir", default=None, help="where report.md and the PNG plots go (default: --results-dir)")
    parser.add_argument("--no-plots", action="store_true", help="write the Markdown only")


def main(args) -> int:
    from fairseq_xlmr.evaluation import report

    return report.run(args)
