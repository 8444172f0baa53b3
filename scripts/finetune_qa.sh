#!/usr/bin/env bash
# Fine-tune XLM-R on English SQuAD v1.1 and evaluate on MLQA in every language (XLM-R, Table 3).
#
# Usage:    scripts/finetune_qa.sh PRETRAINED_DIR QA_DATA_DIR [extra fairseq-train args, e.g. --max-update 50]
#   PRETRAINED_DIR  model.pt + dict.txt + sentencepiece.bpe.model (a released XLM-R dir, or ours)
#   QA_DATA_DIR     train-v1.1.json (SQuAD) + MLQA dev-context-<l>-question-<l>.json (+ test-...) files
# Recipe:   XTREME's XLM-R QA settings: lr 3e-5 with 500 warmup updates then linear decay, batch 32,
#           windows of 384 tokens with doc stride 128 (questions cut to 64), 2 epochs, n-best 20, answers
#           of at most 30 pieces; the checkpoint with the best average dev F1 is kept and evaluated.
#           One run per seed (`xlmr finetune-seeds`), each decoded on the MLQA test files (dev if absent).
# Expected: XLM-R Base (--arch xlmr_base), MLQA test F1 / EM average about 63.7 / 46.3 (paper; per language
#           in $SAVE_DIR/seed<k>/results.json with predictions beside it, mean ± std over seeds in
#           $SAVE_DIR/summary.json; `xlmr report` puts it beside the paper's Table 3). ~2 h per seed on one V100.
# Env:      ARCH (xlmr_base), SAVE_DIR (checkpoints/mlqa), SEEDS ("1"; the paper averaged 5: "1 2 3 4 5"),
#           LANGS (en,es,de,ar,hi,vi,zh), QUESTION_LANGS (empty; the same list for MLQA's G-XLT grid), LR,
#           BATCH, UPDATE_FREQ (gradient accumulation: BATCH / UPDATE_FREQ windows per step), EPOCHS, WARMUP,
#           TOTAL_UPDATES (linear decay horizon: ~88.6k SQuAD windows x 2 epochs / 32), MAX_LENGTH, DOC_STRIDE,
#           FP16 (1 on GPU).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)  # paths given by the user stay relative to where they run it

if [[ $# -lt 2 ]]; then
  sed -n '2,18p' "$0" >&2
  exit 2
fi
PRETRAINED_DIR=$1
QA_DATA_DIR=$2
shift 2

ARCH=${ARCH:-xlmr_base}
SEEDS=${SEEDS:-1}
read -r -a seeds <<< "$SEEDS"
SAVE_DIR=${SAVE_DIR:-checkpoints/mlqa}
LANGS=${LANGS:-en,es,de,ar,hi,vi,zh}
QUESTION_LANGS=${QUESTION_LANGS:-}
LR=${LR:-3e-5}
BATCH=${BATCH:-32}
UPDATE_FREQ=${UPDATE_FREQ:-1}
EPOCHS=${EPOCHS:-2}
WARMUP=${WARMUP:-500}
TOTAL_UPDATES=${TOTAL_UPDATES:-5540}
MAX_LENGTH=${MAX_LENGTH:-384}
DOC_STRIDE=${DOC_STRIDE:-128}
BIN=${BIN:-$REPO/.venv/bin}
if [[ -z "${FP16:-}" ]]; then
  FP16=$("$BIN/python" -c 'import torch; print(int(torch.cuda.is_available()))')
fi

data=("$QA_DATA_DIR" --user-dir "$REPO/fairseq_xlmr" --task xlmr_span_qa --criterion xlmr_span_qa
      --train-file train-v1.1.json --eval-languages "$LANGS" --question-languages "$QUESTION_LANGS"
      --max-length "$MAX_LENGTH" --doc-stride "$DOC_STRIDE" --max-query-length 64
      --n-best 20 --max-answer-length 30 --qa-metric mlqa --num-workers 2)
model=(--arch "$ARCH" --restore-file "$PRETRAINED_DIR/model.pt"
       --reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler
       --dropout 0.1 --attention-dropout 0.1)
optim=(--optimizer xlmr_fused_adam --adam-betas "(0.9, 0.999)" --adam-eps 1e-8 --weight-decay 0.0 --clip-norm 1.0
       --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates "$WARMUP" --total-num-update "$TOTAL_UPDATES"
       --batch-size $((BATCH / UPDATE_FREQ)) --update-freq "$UPDATE_FREQ" --required-batch-size-multiple 1
       --max-epoch "$EPOCHS")
selection=(--valid-subset valid --best-checkpoint-metric f1 --maximize-best-checkpoint-metric
           --no-epoch-checkpoints --log-format json --log-interval 50)
[[ "$FP16" == 1 ]] && optim+=(--fp16)

# Per seed: fairseq-train into $SAVE_DIR/seed<k>, then checkpoint_best.pt decoded as `xlmr eval-qa` does.
"$BIN/xlmr" finetune-seeds --name mlqa --seeds "${seeds[@]}" --save-dir "$SAVE_DIR" -- \
  "${data[@]}" "${model[@]}" "${optim[@]}" "${selection[@]}" "$@"
