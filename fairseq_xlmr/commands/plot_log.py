"""`xlmr plot-log`: per-language loss curves (PNG) from a fairseq-train JSON log."""


def add_arguments(parser):
    parser.add_argument("log_file", help="fairseq-train --log-file written with --log-format json")
    parser.add_argument("--out", required=True, help="PNG to write")


def main(args) -> int:
    from fairseq_xlmr.evaluation import plots

    return plots.run(args)
