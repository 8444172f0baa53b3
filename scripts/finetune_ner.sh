#!/usr/bin/env bash
# Named entity recognition as in XLM-R (Conneau et al., 2020, Table 2: CoNLL-2002/2003, no CRF): labels
# on first sub-words, sliding windows over long sentences, entity-level F1 (seqeval/conlleval) per
# language, one model selected on the average dev F1; mean ± std over seeds.
#
# Usage:    MODEL=xlmr.base/model.pt DATA=conll scripts/finetune_ner.sh [extra fairseq-train args]
# Data:     $DATA/<lang>/{train,dev,test}.txt for en de es nl, e.g. from the CoNLL files:
#             for p in en:eng de:deu es:esp nl:ned; do l=${p%:*} c=${p#*:}; mkdir -p conll/$l
#               ln -s "$PWD/$c.train" conll/$l/train.txt; ln -s "$PWD/$c.testa" conll/$l/dev.txt
#               ln -s "$PWD/$c.testb" conll/$l/test.txt; done
#           (the es/nl/de files are Latin-1: read as such automatically). WikiANN/PAN-X (XTREME's
#           `lang:word<TAB>label` files): FORMAT=wikiann DATA=panx with $DATA/<lang>/{train,dev,test}.
# Model:    as in scripts/finetune_xnli.sh.
# Settings: TRAIN_LANGS=en (cross-lingual transfer, default), all (train all), or one language with
#           EVAL_LANGS the same (train each); XTREME: lr 2e-5, batch 32, 10 epochs, max length 128.
# Expected: test average F1, XLM-R base: 79.11 (train en) / 87.66 (train all) / 88.81 (train each);
#           large: 80.94 / 89.43 / 90.24 (paper; expect about ±1).
# Output:   $SAVE_DIR/seed<k>/{checkpoint_best.pt,results.json}, $SAVE_DIR/summary.json, a mean ± std table.
# Env:      DATA, FORMAT (conll), TRAIN_LANGS (en), EVAL_LANGS (en,nl,es,de), SAVE_DIR (checkpoints/ner-$TRAIN_LANGS),
#           TRAIN_FILE/VALID_FILE/TEST_FILE ({lang}/train.txt, ...), LR (2e-5; RECIPE=transfer: 1e-4), BATCH (32), EPOCHS (10),
#           MAX_LENGTH (128), and MODEL, SPM, ARCH, SEEDS, FP16 (scripts/lib/finetune_common.sh).
set -euo pipefail

DATA=${DATA:?set DATA to the directory holding <lang>/train.txt, dev.txt and test.txt}
FORMAT=${FORMAT:-conll}
TRAIN_LANGS=${TRAIN_LANGS:-en}
EVAL_LANGS=${EVAL_LANGS:-en,nl,es,de}
SAVE_DIR=${SAVE_DIR:-checkpoints/ner-$TRAIN_LANGS}
TRAIN_FILE=${TRAIN_FILE:-\{lang\}/train.txt}
VALID_FILE=${VALID_FILE:-\{lang\}/dev.txt}
TEST_FILE=${TEST_FILE-\{lang\}/test.txt}  # empty: no test split
XTREME_LR=2e-5
BATCH=${BATCH:-32}
EPOCHS=${EPOCHS:-10}
MAX_LENGTH=${MAX_LENGTH:-128}
NAME=ner
METRIC=f1

task_args=("$DATA" --task xlmr_token_classification --criterion xlmr_token_classification
           --data-format "$FORMAT" --metric f1 --train-file "$TRAIN_FILE" --valid-file "$VALID_FILE"
           --test-file "$TEST_FILE" --train-languages "$TRAIN_LANGS" --eval-languages "$EVAL_LANGS"
           --max-length "$MAX_LENGTH")

source "$(dirname "$0")/lib/finetune_common.sh"
