#!/usr/bin/env bash
# XNLI as in XLM-R (Conneau et al., 2020, Table 1): fine-tune, select one model on the average dev
# accuracy of all languages, report test accuracy per language; mean ± std over seeds.
#
# Usage:    MODEL=xlmr.base/model.pt DATA=xnli scripts/finetune_xnli.sh [extra fairseq-train args]
# Data:     $DATA/XNLI-1.0/xnli.{dev,test}.tsv and $DATA/XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv
#           (XNLI-1.0.zip and XNLI-MT-1.0.zip unpacked side by side).
# Model:    a released XLM-R dir (model.pt + dict.txt + sentencepiece.bpe.model), or `make demo`'s:
#           MODEL=demo/checkpoints/checkpoint_last.pt SPM=demo/spm/sentencepiece.bpe.model ... --cpu
# Settings: TRAIN_LANGS=en: cross-lingual transfer (default); TRAIN_LANGS=all: translate-train-all.
#           XTREME's hyperparameters: lr 2e-5 (large: LR=3e-5), batch 32, 5 epochs, max length 128.
# Expected: test average, XLM-R base: 76.2 (transfer) / 79.1 (translate-train-all); large: 80.9 / 83.6
#           (paper, 5 seeds; expect about ±0.5). `xlmr report --results-dir checkpoints` tabulates ours.
# Output:   $SAVE_DIR/seed<k>/{checkpoint_best.pt,results.json}, $SAVE_DIR/summary.json, a mean ± std table.
# Env:      DATA, TRAIN_LANGS (en), EVAL_LANGS (all), SAVE_DIR (checkpoints/xnli-$TRAIN_LANGS), LR (2e-5; RECIPE=transfer: 1e-4),
#           BATCH (32), EPOCHS (5), MAX_LENGTH (128), and MODEL, SPM, ARCH, SEEDS, FP16 (scripts/lib/finetune_common.sh).
set -euo pipefail

DATA=${DATA:?set DATA to the directory holding XNLI-1.0/ and XNLI-MT-1.0/}
TRAIN_LANGS=${TRAIN_LANGS:-en}
EVAL_LANGS=${EVAL_LANGS:-all}
SAVE_DIR=${SAVE_DIR:-checkpoints/xnli-$TRAIN_LANGS}
XTREME_LR=2e-5
BATCH=${BATCH:-32}
EPOCHS=${EPOCHS:-5}
MAX_LENGTH=${MAX_LENGTH:-128}
NAME=xnli
METRIC=accuracy

task_args=("$DATA" --task xlmr_sentence_classification --criterion xlmr_sentence_classification
           --data-format xnli --train-file "XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv"
           --valid-file XNLI-1.0/xnli.dev.tsv --test-file XNLI-1.0/xnli.test.tsv
           --train-languages "$TRAIN_LANGS" --eval-languages "$EVAL_LANGS" --max-length "$MAX_LENGTH")

source "$(dirname "$0")/lib/finetune_common.sh"
