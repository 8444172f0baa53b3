"""`xlmr import-hf`: HF transformers XLMRoberta(XL) models -> model dir."""

from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE


def add_arguments(parser) -> None:
    parser.add_argument("hf_dir", metavar="HF_DIR", help="HF model directory (the layout of export-hf)")
    parser.add_argument("out_dir", metavar="OUT_DIR",
                        help=f"where {CHECKPOINT_FILE}, {DICT_FILE} and {SPM_FILE} go")
    parser.add_argument("--head-name", default=None,
                        help="name of the head when HF_DIR itself is a head model (default: 'qa' for "
                        "question answering, 'head' otherwise)")
    parser.add_argument("--sentence-pooling", choices=["cls", "mean"], default="cls",
                        help="how the model pools a sentence, recorded as `model.sentence_pooling` for fine-tuning and "
                        "the sentence tools: cls for XLM-R, mean for sentence-embedding models (multilingual-e5)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT_DIR")


def main(args) -> int:
    from fairseq_xlmr.interop import hf_import

    return hf_import.run(args)
