"""`xlmr export-hf`: an XLM-R model directory -> HF transformers `XLMRoberta*` / `XLMRobertaXL*` models.

Layout of OUT_DIR (each directory is a complete HF model: config.json, model.safetensors, tokenizer):

    OUT_DIR/                 *ForMaskedLM (encoder + LM head), always
    OUT_DIR/<head>/          one per head: *ForSequenceClassification for a sentence head,
                             *ForQuestionAnswering for a QA head, *ForTokenClassification otherwise

QA rule: a token head is exported as QA when it is named in `--qa-heads`; without that option, a
token head is QA when it has 2 outputs (start, end) and its name contains "qa" (any case), as the
import names an HF QA model "qa". HF's pooler has no fairseq counterpart and none of these HF
classes has one; loading OUT_DIR as a bare `XLMRobertaModel` gives a freshly initialised pooler.
"""

import logging
import shutil
from pathlib import Path

from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE, atomic_output_dir, check_output_dir
from fairseq_xlmr.interop import hf_mapping as mapping
from fairseq_xlmr.preprocess.spm import check_spm_matches_dict

logger = logging.getLogger(__name__)


def run(args) -> int:
    written = export(Path(args.ckpt_dir), Path(args.out_dir), checkpoint_file=args.checkpoint_file,
                     qa_heads=args.qa_heads, overwrite=args.overwrite)
    for subdir, class_name in written:
        print(f"{Path(args.out_dir) / subdir}: {class_name}")
    return 0


def is_qa_head(name, num_outputs, qa_heads=None):
    """The QA rule of the module docstring."""
    if qa_heads is not None:
        return name in qa_heads
    return num_outputs == 2 and "qa" in name.lower()


def head_plan(model, qa_heads=None):
    """[(subdir, part, head name, num_labels)] of the HF models to write; MLM first, at the root."""
    token_heads = {name: head.proj.out_features for name, head in model.token_heads.items()}
    for name in qa_heads or []:
        if name not in token_heads:
            raise ValueError(f"--qa-heads names {name!r}, but the model's token heads are "
                             f"{sorted(token_heads)}; name one of them.")
        if token_heads[name] != 2:
            raise ValueError(f"--qa-heads {name!r}: a QA head has 2 outputs (start, end), this one has "
                             f"{token_heads[name]}; drop it from --qa-heads.")
    plan = [("", mapping.MLM, None, None)]
    for name, head in model.classification_heads.items():
        plan.append((name, mapping.SENTENCE, name, head.out_proj.out_features))
    for name, num_outputs in token_heads.items():
        if name in model.classification_heads:
            raise ValueError(f"head name {name!r} is both a sentence head and a token head; each head "
                             "goes to OUT_DIR/<name>/, so rename one of them before exporting.")
        part = mapping.QA if is_qa_head(name, num_outputs, qa_heads) else mapping.TOKEN
        plan.append((name, part, name, num_outputs))
    return plan


def check_sentence_pooling(task_cfg, model_args, checkpoint_path) -> None:
    """HF's sequence-classification head reads `<s>`: refuse a head trained on mean-pooled states
    (`xlmr_sentence_classification --pooling mean`, in the checkpoint's `cfg.task`, or `--pooling model` on an
    encoder whose `model.sentence_pooling` is mean), whose HF twin would predict something else."""
    from fairseq_xlmr.tasks.xlmr_sentence_classification import head_pooling

    pooling = head_pooling(task_cfg.get("pooling", "cls"), model_args)
    if pooling != "cls":
        raise ValueError(f"{checkpoint_path}: its sentence head reads {pooling}-pooled states (task.pooling="
                         f"{task_cfg.get('pooling')!r}), but HF's XLMRobertaForSequenceClassification reads the <s> "
                         "state; export a model fine-tuned with --pooling cls.")


def hf_tokenizer(spm_path, work_dir):
    """The HF XLM-R tokenizer of a SentencePiece model (fast; transformers converts the .model itself).

    Its vocabulary is `<s> <pad> </s> <unk>`, SPM pieces 3.., `<mask>`: the fairseq dictionary's
    order whenever dict.txt lists SPM ids >= 3 in order (checked by the caller).
    """
    import transformers

    Path(work_dir).mkdir(parents=True)
    shutil.copy(spm_path, Path(work_dir) / SPM_FILE)
    return transformers.XLMRobertaTokenizerFast.from_pretrained(str(work_dir))


def export(ckpt_dir: Path, out_dir: Path, checkpoint_file=CHECKPOINT_FILE, qa_heads=None, overwrite=False):
    """Write the HF models of a model directory; return [(subdir, HF class name)]."""
    import transformers

    from fairseq_xlmr.hub import XlmrHubInterface

    check_output_dir(out_dir, overwrite)
    hub = XlmrHubInterface.from_pretrained(str(ckpt_dir), checkpoint_file)  # names missing files
    spm_path, dict_path = Path(ckpt_dir) / SPM_FILE, Path(ckpt_dir) / DICT_FILE
    check_spm_matches_dict(spm_path, dict_path)  # HF ids = fairseq ids only in XLM-R's layout
    model, dictionary = hub.model, hub.dictionary
    family = mapping.family_of(model.args)
    state = model.state_dict()
    unmapped = mapping.unmapped_fairseq_keys(state, family)
    if unmapped:
        raise ValueError(f"weights {unmapped[:5]} have no HF counterpart (language embeddings are "
                         "XLM's, not XLM-R's); export a model trained without them.")
    if model.classification_heads:
        check_sentence_pooling(hub.task_cfg, model.args, Path(ckpt_dir) / checkpoint_file)
    positions = state["encoder.sentence_encoder.embed_positions.weight"].shape[0]
    # Every config is built (and checked) before anything is written.
    plan = [(subdir, part, head, mapping.hf_config(model.args, family, dictionary, positions, num_labels))
            for subdir, part, head, num_labels in head_plan(model, qa_heads)]

    written = []
    with atomic_output_dir(out_dir, overwrite) as tmp:
        tokenizer = hf_tokenizer(spm_path, tmp / ".tokenizer")
        for subdir, part, head, config in plan:
            class_name = mapping.HF_PREFIX[family] + mapping.HF_CLASS_SUFFIX[part]
            hf_model = getattr(transformers, class_name)(config).eval()
            hf_model.load_state_dict(mapping.to_hf(state, family, part, head), strict=True)
            target = tmp / subdir
            hf_model.save_pretrained(str(target))  # model.safetensors
            tokenizer.save_pretrained(str(target))  # tokenizer.json (fast) + tokenizer_config.json
            shutil.copy(spm_path, target / SPM_FILE)  # what the sentencepiece-based tokenizer loads
            written.append((subdir, class_name))
            logger.info("exported %s to %s", class_name, target)
        shutil.rmtree(tmp / ".tokenizer")
    return written
