"""`xlmr export-hf`: model dir -> HF transformers XLMRoberta(XL) models, one per head."""

from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE


def add_arguments(parser) -> None:
    parser.add_argument("ckpt_dir", metavar="CKPT_DIR",
                        help=f"model directory: model.pt, {DICT_FILE}, {SPM_FILE}")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="where the HF models go: the MLM model in OUT_DIR, each head in OUT_DIR/<head name>/")
    parser.add_argument("--checkpoint-file", default=CHECKPOINT_FILE, help="checkpoint file name in CKPT_DIR")
    parser.add_argument("--qa-heads", nargs="*", default=None, metavar="NAME",
                        help="token heads to export as XLMRobertaForQuestionAnswering (default: 2-output "
                        "token heads whose name contains 'qa'; the option alone: none)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")


def main(args) -> int:
    from fairseq_xlmr.interop import hf_export

    return hf_export.run(args)
