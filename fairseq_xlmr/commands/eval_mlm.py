"""`xlmr eval-mlm`: per-language MLM loss/perplexity of a checkpoint (and of its init)."""


def add_arguments(parser):
    parser.add_argument("checkpoint", help="checkpoint of an xlmr_mlm run (e.g. checkpoints/checkpoint_best.pt)")
    parser.add_argument("--data", help="data-bin to evaluate on (default: the run's task.data)")
    parser.add_argument("--split", default="valid", help="split to score (default: valid)")
    parser.add_argument("--with-init", action="store_true",
                        help="also score the randomly initialised model (same architecture and seed)")
    parser.add_argument("--start", default=None,
                        help="also score this checkpoint's weights (same architecture, e.g. the model dir's model.pt "
                             "a continued-pretraining run started from) on the same data and masks")
    parser.add_argument("--mask-seed", type=int, default=None,
                        help="seed of the validation masks (default: the checkpoint's own common.seed, so "
                             "runs trained with different seeds are scored on different masks); give the same "
                             "value to every checkpoint you compare")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--json", help="write the results as JSON to this path")
    parser.add_argument("--results-dir",
                        help="also write the trained model's perplexities as <dir>/results.json (task "
                             "`<split>_ppl`, seed = the mask seed) for `xlmr report`")


def main(args) -> int:
    from fairseq_xlmr.evaluation import mlm_eval

    return mlm_eval.run(args)
