#!/usr/bin/env bash
# Continued masked-LM pretraining of a pretrained model dir on new text (language or domain adaptation), and what
# it does to the model: per-language validation perplexity and xx->en retrieval per layer, before and after.
#
# Usage:    scripts/continue_pretraining.sh MODEL_DIR [extra fairseq-train args]
# Steps:    1. binarise CORPUS/mono (LANGS) with the model's own SentencePiece model (xlmr binarize);
#           2. fairseq-train --task xlmr_mlm from MODEL_DIR/model.pt (--finetune-from-model: the weights, a fresh
#              optimizer and schedule; the model's options come from its checkpoint, and a dictionary that is not
#              the model's is refused); an LM head the model lacked was initialised when the model dir was made
#              (xlmr fetch-pretrained, import-hf) and is trained here, tied to the embeddings;
#           3. xlmr eval-mlm: the start and the end on the same validation masks;
#           4. retrieval xx->en at every layer (held-out gettext pairs and UDHR) of the start and the end.
# Expected: $OUT/report.md. multilingual-e5-small, 300 updates on make demo's corpus (2 CPU cores): ~25 min; the README
#           shows that run.
# Env:      OUT (adapt/<model dir name>), CORPUS (demo/corpus: mono/ heldout/ udhr/), LANGS (en,de,es,fr,it,nl,ru,tr),
#           UPDATES (300), LR (5e-5), WARMUP (30), BATCH (16 sequences), TOKENS (128 per sequence), VALID_LINES
#           (300 per language), OMP_NUM_THREADS (2)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

if [[ $# -lt 1 || $1 == -* ]]; then
  sed -n '2,20p' "$0" >&2
  exit 2
fi
MODEL_DIR=$1
shift
OUT=${OUT:-adapt/$(basename "$MODEL_DIR")}
CORPUS=${CORPUS:-demo/corpus}
LANGS=${LANGS:-en,de,es,fr,it,nl,ru,tr}
UPDATES=${UPDATES:-300}
LR=${LR:-5e-5}
WARMUP=${WARMUP:-30}
BATCH=${BATCH:-16}
TOKENS=${TOKENS:-128}
VALID_LINES=${VALID_LINES:-300}
BIN=${BIN:-$REPO/.venv/bin}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$SECONDS

log() { printf '[%4ds] %s\n' $((SECONDS - start)) "$*"; }
fail() { echo "continue_pretraining.sh: $*" >&2; exit 2; }

for file in model.pt dict.txt sentencepiece.bpe.model; do
  [[ -f $MODEL_DIR/$file ]] || fail "$MODEL_DIR/$file not found; pass a model dir (xlmr fetch-pretrained, make demo)"
done
for dir in mono heldout udhr; do
  [[ -d $CORPUS/$dir ]] || fail "$CORPUS/$dir not found; run \`make demo\` (or xlmr fetch-corpora --heldout-pairs 500" \
    "--out-dir D, then CORPUS=D)"
done
for name in UPDATES WARMUP BATCH TOKENS; do
  [[ ${!name} =~ ^[0-9]+$ && ${!name} -gt 0 ]] || fail "$name=${!name} must be a positive whole number"
done
mkdir -p "$OUT/logs"
# The model's own options (sizes, LayerNorm epsilon, pooling) for fairseq-train, read from its checkpoint.
options=$("$BIN/python" -c "import sys
from fairseq_xlmr.experiments.seeds import pretrained_model_args
print(' '.join(pretrained_model_args(sys.argv[1])))" "$MODEL_DIR/model.pt" 2> "$OUT/logs/options.log") \
  || { tail -3 "$OUT/logs/options.log" >&2; fail "cannot read $MODEL_DIR/model.pt (above)"; }
read -r -a model_args <<< "$options"
layers=${model_args[1]}  # --encoder-layers N comes first
middle=$(( (layers * 7 + 6) / 12 ))  # XTREME's layer 7 of 12
others=$(tr ',' '\n' <<< "$LANGS" | grep -vx en | paste -sd, -)  # retrieved into English

log "1/4 binarise $CORPUS/mono ($LANGS) with the model's SentencePiece model"
"$BIN/xlmr" binarize --corpus-dir "$CORPUS/mono" --languages "$LANGS" --spm-model "$MODEL_DIR/sentencepiece.bpe.model" \
  --dest-dir "$OUT/data-bin" --valid-lines "$VALID_LINES" --workers 2 --overwrite > "$OUT/logs/binarize.log" 2>&1 \
  || { tail -20 "$OUT/logs/binarize.log" >&2; exit 1; }

log "2/4 xlmr_mlm from $MODEL_DIR/model.pt for $UPDATES updates"
train=("$OUT/data-bin" --user-dir "$REPO/fairseq_xlmr" --task xlmr_mlm --criterion xlmr_mlm --arch xlmr_base
       "${model_args[@]}" --finetune-from-model "$MODEL_DIR/model.pt" --tokens-per-sample "$TOKENS"
       --batch-size "$BATCH" --required-batch-size-multiple 1 --optimizer xlmr_fused_adam --adam-betas "(0.9,0.98)"
       --adam-eps 1e-6 --weight-decay 0.01 --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates "$WARMUP"
       --total-num-update "$UPDATES" --max-update "$UPDATES" --clip-norm 1.0 --multilang-sampling-alpha 0.3
       --save-dir "$OUT/checkpoints" --no-epoch-checkpoints --validate-interval-updates 100 --cpu --num-workers 0
       --log-format json --log-interval 20 --log-file "$OUT/train.log")
rm -rf "$OUT/checkpoints" "$OUT/train.log"
"$BIN/fairseq-train" "${train[@]}" "$@" > "$OUT/logs/train.log" 2>&1 || { tail -30 "$OUT/logs/train.log" >&2; exit 1; }
mkdir -p "$OUT/model"
cp "$OUT/checkpoints/checkpoint_last.pt" "$OUT/model/model.pt"
cp "$MODEL_DIR/dict.txt" "$MODEL_DIR/sentencepiece.bpe.model" "$OUT/model/"

log "3/4 validation perplexity, start and end, on the same masks"
"$BIN/xlmr" eval-mlm "$OUT/model/model.pt" --start "$MODEL_DIR/model.pt" --mask-seed 1 --json "$OUT/ppl.json" \
  > "$OUT/ppl.md" 2> "$OUT/logs/eval-mlm.log" || { tail -20 "$OUT/logs/eval-mlm.log" >&2; exit 1; }

log "4/4 retrieval xx->en at every layer, start and end"
for when in start end; do
  dir=$MODEL_DIR
  [[ $when == end ]] && dir=$OUT/model
  for bench in gettext udhr; do
    data=$CORPUS/heldout format=tatoeba
    [[ $bench == udhr ]] && data=$CORPUS/udhr format=aligned
    OUT_DIR=$OUT/retrieval/$bench/$when NAME=$bench FORMAT=$format REPORT_LAYER=$middle SCORING=cosine BIN=$BIN \
      bash "$REPO/scripts/eval_retrieval.sh" "$dir" "$data" --cpu --languages "$others" \
      >> "$OUT/logs/retrieval.log" 2>&1 || { tail -20 "$OUT/logs/retrieval.log" >&2; exit 1; }
  done
done
"$BIN/xlmr" report --results-dir "$OUT/retrieval" --out-dir "$OUT/retrieval" > /dev/null
{
  echo "# Continued pretraining of $MODEL_DIR: $UPDATES updates of xlmr_mlm on $CORPUS/mono ($LANGS)"
  echo
  echo "Validation perplexity per masked piece (\`xlmr eval-mlm --start\`, masks of seed 1):"
  echo
  cat "$OUT/ppl.md"
  echo
  sed 's/^# Results/Retrieval xx->en, cosine of mean-pooled states at layer '"$middle"' (retrieval.json: every layer):/' \
    "$OUT/retrieval/report.md"
} > "$OUT/report.md"
cat "$OUT/report.md"
log "done: $OUT/report.md, the adapted model dir $OUT/model"
