#!/usr/bin/env bash
# Part-of-speech tagging (Universal Dependencies UPOS), XTREME's UD-POS task: labels on first sub-words,
# sliding windows over long sentences, per-language accuracy, one model selected on the average dev
# accuracy; mean ± std over seeds.
#
# Usage:    MODEL=xlmr.base/model.pt DATA=ud EVAL_LANGS=en,de,fr scripts/finetune_pos.sh [extra fairseq-train args]
# Data:     $DATA/<lang>/{train,dev,test}.conllu, e.g. ud/en/train.conllu -> UD_English-EWT/en_ewt-ud-train.conllu
#           (multiword tokens and empty nodes are skipped; each word keeps its own UPOS tag).
# Model:    as in scripts/finetune_xnli.sh.
# Settings: TRAIN_LANGS=en (cross-lingual transfer, XTREME's setting) or all; XTREME: lr 2e-5, batch 32,
#           10 epochs, max length 128.
# Expected: the XLM-R paper reports no POS number; English test accuracy should reach the mid 90s, other
#           languages less in transfer (XTREME reports XLM-R large averages in the 70s over its 33 languages).
# Output:   $SAVE_DIR/seed<k>/{checkpoint_best.pt,results.json}, $SAVE_DIR/summary.json, a mean ± std table.
# Env:      DATA, TRAIN_LANGS (en), EVAL_LANGS (all), SAVE_DIR (checkpoints/pos-$TRAIN_LANGS), LR (2e-5; RECIPE=transfer: 1e-4),
#           BATCH (32), EPOCHS (10), MAX_LENGTH (128), and MODEL, SPM, ARCH, SEEDS, FP16 (scripts/lib/finetune_common.sh).
set -euo pipefail

DATA=${DATA:?set DATA to the directory holding <lang>/train.conllu, dev.conllu and test.conllu}
TRAIN_LANGS=${TRAIN_LANGS:-en}
EVAL_LANGS=${EVAL_LANGS:-all}
SAVE_DIR=${SAVE_DIR:-checkpoints/pos-$TRAIN_LANGS}
XTREME_LR=2e-5
BATCH=${BATCH:-32}
EPOCHS=${EPOCHS:-10}
MAX_LENGTH=${MAX_LENGTH:-128}
NAME=pos
METRIC=accuracy

task_args=("$DATA" --task xlmr_token_classification --criterion xlmr_token_classification
           --data-format conllu --metric accuracy --train-file "{lang}/train.conllu" --valid-file "{lang}/dev.conllu"
           --test-file "{lang}/test.conllu" --train-languages "$TRAIN_LANGS" --eval-languages "$EVAL_LANGS"
           --max-length "$MAX_LENGTH")

source "$(dirname "$0")/lib/finetune_common.sh"
