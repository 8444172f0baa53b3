#!/usr/bin/env bash
# Demo-scale replication of "Emerging Cross-lingual Structure in Pretrained Language Models"
# (Conneau, Wu, Li, Zettlemoyer, Stoyanov, ACL 2020): two monolingual models (en, de) against one
# bilingual en+de model of the same size.
#
# Usage:    scripts/replicate_emerging.sh [extra fairseq-hydra-train overrides for all three models]
# Needs:    `make demo`'s corpus, SentencePiece model and data-bin ($DEMO_DIR/{corpus,spm,data-bin}).
# Steps:    1. en-de dictionary (`xlmr fetch-dictionaries`)
#           2. three models on the demo recipe (hydra_configs/pretrain/demo.yaml), $UPDATES updates each:
#              en only, de only, en+de. All three read the demo's one SentencePiece model and dict.txt, so
#              a word is the same pieces in every model and BLI compares like with like. The monolingual
#              models get different seeds: with one seed their never-trained rows would stay identical and
#              fake an alignment.
#           3. CKA per layer (en vs de sentences): bilingual model, and the en model vs the de model
#           4. BLI en->de P@1 (input embeddings; NN and CSLS; identity, Procrustes, refined): both settings
#           5. sentence retrieval en->de per layer before / after an orthogonal map: both settings
#           -> $OUT/report.md (all tables) + the PNG of each analysis.
# Expected: 24.5 min measured on 2 CPU cores shared with four other jobs (load 7-8); less when idle.
#           The paper's finding: the monolingual models' spaces, though trained apart, map onto each
#           other by an orthogonal map almost as well as the bilingual model's; at this scale only part
#           of that shows (docs/ablations.md has a run and its numbers).
# Env:      DEMO_DIR (default demo), OUT (default $DEMO_DIR/emerging), UPDATES (default 300),
#           MAX_LINES (parallel pairs for CKA/alignment, default 1000), XLMR_CACHE (download cache).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=$(realpath -m "${DEMO_DIR:-demo}")  # absolute: hydra runs in its own directory
OUT=$(realpath -m "${OUT:-$DEMO_DIR/emerging}")
UPDATES=${UPDATES:-300}
MAX_LINES=${MAX_LINES:-1000}
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

for need in "$DEMO_DIR/spm/sentencepiece.bpe.model" "$DEMO_DIR/data-bin/en/train.idx" \
            "$DEMO_DIR/data-bin/de/train.idx" "$DEMO_DIR/corpus/para/en-de.de"; do
  [[ -f "$need" ]] || { echo "missing $need: run \`make demo\` first (or set DEMO_DIR)" >&2; exit 1; }
done

dictionaries=("$BIN/xlmr" fetch-dictionaries --out-dir "$OUT/dictionaries" --languages de)
[[ -n "${XLMR_CACHE:-}" ]] && dictionaries+=(--cache-dir "$XLMR_CACHE")
train=("$BIN/fairseq-hydra-train" --config-dir hydra_configs/pretrain --config-name demo
       "common.user_dir=$PWD/fairseq_xlmr" "task.data=$DEMO_DIR/data-bin" "common.cpu=true"
       "optimization.max_update=$UPDATES" "lr_scheduler.warmup_updates=$(( UPDATES / 10 ))"
       "dataset.validate_interval_updates=$UPDATES" "checkpoint.save_interval_updates=$UPDATES")
cka=("$BIN/xlmr" analyze cka --data-dir "$DEMO_DIR/corpus/para" --lang-a en --lang-b de
     --max-lines "$MAX_LINES" --cpu)
bli=("$BIN/xlmr" analyze bli --src en --tgt de --dictionary "$OUT/dictionaries" --embeddings input --cpu)
align=("$BIN/xlmr" analyze align --data-dir "$DEMO_DIR/corpus/para" --src en --tgt de
       --max-lines "$MAX_LINES" --map orthogonal --cpu)

step() { echo; echo "== $* ($(date +%T))"; }
# model NAME LANGUAGES SEED: train on the demo recipe and lay out a model dir (model.pt + dict + spm).
model() {
  local dir="$OUT/models/$1"
  rm -rf "$dir"
  mkdir -p "$dir"
  "${train[@]}" "++task.languages='$2'" "common.seed=$3" "checkpoint.save_dir=$dir/checkpoints" \
    "common.log_file=$dir/train.log" "hydra.run.dir=$dir/hydra" "${@:4}" > "$dir.out" 2>&1 \
    || { tail -20 "$dir.out" >&2; exit 1; }
  cp "$dir/checkpoints/checkpoint_last.pt" "$dir/model.pt"
  cp "$DEMO_DIR/spm/sentencepiece.bpe.model" "$DEMO_DIR/spm/dict.txt" "$dir/"
  rm -rf "$dir/checkpoints"
  echo "$1: $(grep -o '"valid_loss": "[0-9.]*"' "$dir/train.log" | tail -1) ($dir)"
}

start=$SECONDS
mkdir -p "$OUT/models"
step "1/5 en-de dictionary"
[[ -f "$OUT/dictionaries/en-de.0-5000.txt" ]] || "${dictionaries[@]}"
step "2/5 three models, $UPDATES updates each"
model en en 1 "$@"
model de de 2 "$@"
model en-de en,de 1 "$@"
M="$OUT/models"
step "3/5 CKA"
"${cka[@]}" --model-a "$M/en-de" --out-dir "$OUT/cka_bilingual"
"${cka[@]}" --model-a "$M/en" --model-b "$M/de" --out-dir "$OUT/cka_monolingual"
step "4/5 BLI (Procrustes)"
"${bli[@]}" --model-a "$M/en-de" --out-dir "$OUT/bli_bilingual"
"${bli[@]}" --model-a "$M/en" --model-b "$M/de" --out-dir "$OUT/bli_monolingual"
step "5/5 retrieval before/after mapping"
"${align[@]}" --model-a "$M/en-de" --model-b "$M/en-de" --out-dir "$OUT/align_bilingual"
"${align[@]}" --model-a "$M/en" --model-b "$M/de" --out-dir "$OUT/align_monolingual"

{
  echo "# Emerging cross-lingual structure at demo scale"
  echo
  echo "Three models of the demo recipe (4 layers x 128), $UPDATES updates each: en only (seed 1), de only"
  echo "(seed 2), en+de (seed 1, alpha 0.3); one shared SentencePiece model ($DEMO_DIR/spm)."
  echo "Made by \`scripts/replicate_emerging.sh\` in $(( (SECONDS - start) / 60 )) min."
  for analysis in cka bli align; do
    for setting in bilingual monolingual; do
      echo
      echo "## $analysis: $setting"
      echo
      cat "$OUT/${analysis}_$setting/$analysis.md"
      echo
      echo "![$analysis $setting](${analysis}_$setting/$analysis.png)"
    done
  done
} > "$OUT/report.md"
echo
echo "replication finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $OUT/report.md"
