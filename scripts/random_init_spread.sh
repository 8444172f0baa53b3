#!/usr/bin/env bash
# One random init is one draw. Where does the `make demo` model stand among K random inits of itself
# (issue 4)? On the demo's Dutch reviews two random inits gave a frozen probe 43.7 % and 55.1 %.
#   - retrieval xx -> en of the model and of every twin on UDHR and on the held-out gettext pairs, scored
#     as eval_demo_transfer.sh's tables (margin, centred states, layer 2), then `xlmr spread` tables:
#     per language the twins' mean ± std, min-max, and how many the model beats;
#   - the frozen sentiment probe (`xlmr analyze probe --random-inits K`, the same K twins by seed).
# Fine-tuning K twins x 3 seeds would take hours on 2 CPU cores; these need no training.
#
# Usage:    scripts/random_init_spread.sh [MODEL_DIR]   (default demo/release, from `make demo`)
# Expected: $OUT/{udhr,gettext}.md (+ .json), $OUT/probe/probe.{md,json,png}; ~8 min for K=12 on 2 cores.
# Needs:    make demo's corpus (UDHR, held-out pairs) and the sentiment data of eval_demo_transfer.sh.
# Env:      K (12), OUT (demo/transfer/spread), UDHR (demo/corpus/udhr), HELDOUT (demo/corpus/heldout),
#           SENTIMENT (demo/transfer/data/sentiment), LAYER (2)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

MODEL_DIR=${1:-demo/release}
K=${K:-12}
OUT=${OUT:-demo/transfer/spread}
UDHR=${UDHR:-demo/corpus/udhr}
HELDOUT=${HELDOUT:-demo/corpus/heldout}
SENTIMENT=${SENTIMENT:-demo/transfer/data/sentiment}
LAYER=${LAYER:-2}
BIN=${BIN:-$REPO/.venv/bin}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
start=$SECONDS

for file in model.pt dict.txt sentencepiece.bpe.model; do
  [[ -f $MODEL_DIR/$file ]] || { echo "$MODEL_DIR/$file not found; run \`make demo\` or pass a model dir" >&2; exit 2; }
done
[[ $K =~ ^[0-9]+$ && $K -ge 2 ]] || { echo "K=$K: a spread needs K >= 2 random inits (12 by default)" >&2; exit 2; }
[[ -d $UDHR && -d $HELDOUT ]] || { echo "$UDHR or $HELDOUT not found; run \`make demo\` or set UDHR/HELDOUT" >&2; exit 2; }
[[ -f $SENTIMENT/en/train.tsv ]] || { echo "$SENTIMENT/en/train.tsv not found; run scripts/eval_demo_transfer.sh" \
  "(or xlmr fetch-eval-data --out-dir D, then SENTIMENT=D/sentiment)" >&2; exit 2; }

twins=$(mktemp -d)
trap 'rm -rf "$twins"' EXIT
mkdir -p "$OUT/logs"
retrieve() {  # model_dir bench out_dir
  local data=$UDHR format=aligned
  [[ $2 == gettext ]] && data=$HELDOUT format=tatoeba
  OUT_DIR=$3 NAME=$2 FORMAT=$format REPORT_LAYER=$LAYER SCORING=margin BIN=$BIN \
    bash "$REPO/scripts/eval_retrieval.sh" "$1" "$data" --cpu --center >> "$OUT/logs/$2.log" 2>&1 \
    || { tail -20 "$OUT/logs/$2.log" >&2; exit 1; }
}
for bench in udhr gettext; do
  echo "[$((SECONDS - start))s] $bench retrieval: the model, then $K random inits"
  retrieve "$MODEL_DIR" $bench "$OUT/$bench/model"
  for seed in $(seq 1 "$K"); do
    [[ -f $twins/seed$seed/model.pt ]] || "$BIN/xlmr" random-init "$MODEL_DIR" "$twins/seed$seed" --seed "$seed" \
      >> "$OUT/logs/random_init.log" 2>&1
    retrieve "$twins/seed$seed" $bench "$OUT/$bench/random$seed"
  done
  "$BIN/xlmr" spread "$OUT/$bench/model/results.json" --baselines "$OUT/$bench"/random*/results.json \
    --out "$OUT/$bench.md" --title "$bench retrieval xx->en (margin, centred, layer $LAYER, accuracy %):" \
    2> "$OUT/logs/spread.log" || { cat "$OUT/logs/spread.log" >&2; exit 1; }
done
echo "[$((SECONDS - start))s] frozen sentiment probe among $K random inits"
"$BIN/xlmr" analyze probe --model-a "$MODEL_DIR" --random-inits "$K" --data-dir "$SENTIMENT" \
  --out-dir "$OUT/probe" --cpu 2> "$OUT/logs/probe.log" || { tail -20 "$OUT/logs/probe.log" >&2; exit 1; }
echo "done in $(( (SECONDS - start) / 60 )) min: $OUT/udhr.md, $OUT/gettext.md, $OUT/probe/probe.md"
