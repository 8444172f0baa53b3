#!/usr/bin/env bash
# Does model fusion change the demo model? Checkpoint averaging, distillation and an adversarial
# language discriminator at demo scale.
#
# Usage:   scripts/demo_fusion.sh [extra fairseq-hydra-train overrides for every run]
# Needs:   `make demo`'s outputs: demo/release (model dir), demo/data-bin, demo/spm, demo/corpus/udhr.
# Steps:   (1) continue demo/release for UPDATES updates with MLM, seeds 2 and 3, and average the two
#          (xlmr average); (2) continue it as long with MLM + the adversarial language discriminator
#          (criterion xlmr_adversarial_mlm, seed 2: its control is the MLM seed-2 run); (3) train a
#          STUDENT_LAYERS-layer student from scratch twice, with plain MLM and distilled from demo/release
#          (criterion xlmr_distillation); every run's recipe is hydra_configs/pretrain/fusion_demo.yaml.
#          Then per-language validation perplexity (every model on the same masks) and UDHR xx->en retrieval at the last
#          layer (xlmr eval-retrieval) of every model -> one report (xlmr report).
# Expected: ~12 min on 2 cores; docs/fusion.md shows a run and what it does (not) show.
# Re-run:  finished runs under $OUT are kept and only evaluated again; delete $OUT to retrain them.
# Env:     DEMO_DIR (default demo/), OUT (default $DEMO_DIR/fusion), UPDATES (100), STUDENT_UPDATES (200),
#          STUDENT_LAYERS (2), ADV_LAMBDA (0:0,30:1), TEMPERATURE (2).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=$(realpath -m "${DEMO_DIR:-demo}")  # absolute: hydra runs in its own directory
OUT=$(realpath -m "${OUT:-$DEMO_DIR/fusion}")
UPDATES=${UPDATES:-100}
STUDENT_UPDATES=${STUDENT_UPDATES:-200}
STUDENT_LAYERS=${STUDENT_LAYERS:-2}
ADV_LAMBDA=${ADV_LAMBDA:-0:0,30:1}
TEMPERATURE=${TEMPERATURE:-2}
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

for need in "$DEMO_DIR/release/model.pt" "$DEMO_DIR/data-bin/dict.txt" "$DEMO_DIR/spm/sentencepiece.bpe.model" \
            "$DEMO_DIR/corpus/udhr/en.txt"; do
  [[ -f $need ]] || { echo "missing $need: run \`make demo\` first (or set DEMO_DIR)." >&2; exit 1; }
done

train=("$BIN/fairseq-hydra-train" --config-dir hydra_configs/pretrain --config-name fusion_demo
       "common.user_dir=$PWD/fairseq_xlmr" "task.data=$DEMO_DIR/data-bin" "common.cpu=true")
continued="checkpoint.finetune_from_model=$DEMO_DIR/release/model.pt optimization.max_update=$UPDATES"
# Students start from scratch: the demo's own peak lr (demo.yaml) with a warmup that fits the shorter run.
student="model.encoder_layers=$STUDENT_LAYERS optimization.max_update=$STUDENT_UPDATES optimization.lr=[0.002]
         lr_scheduler.warmup_updates=50"
runs=(mlm_seed2 mlm_seed3 adversarial student_mlm student_distilled)
declare -A run_args=(
  [mlm_seed2]="$continued common.seed=2"
  [mlm_seed3]="$continued common.seed=3"
  [adversarial]="$continued common.seed=2 criterion._name=xlmr_adversarial_mlm
                 +criterion.adversarial_lambda=\"$ADV_LAMBDA\""
  [student_mlm]="$student"
  [student_distilled]="$student criterion._name=xlmr_distillation +criterion.teachers=$DEMO_DIR/release
                       +criterion.temperature=$TEMPERATURE"
)

step() { echo; echo "== $* ($(date +%T))"; }
model_dir() {  # a model dir for eval-retrieval: the checkpoint + the vocabulary it was trained with
  mkdir -p "$2"
  ln -sf "$1" "$2/model.pt"
  cp "$DEMO_DIR/spm/sentencepiece.bpe.model" "$DEMO_DIR/spm/dict.txt" "$2/"
}
score_ppl() {  # CHECKPOINT RESULTS_DIR MASK_SEED: per-language validation perplexity -> results.json
  # Every model on the masks of MASK_SEED (by default eval-mlm masks with each run's own seed), scored with
  # the plain MLM loss (a distilled student without its teacher); only eval-mlm's summary line is shown.
  "$BIN/xlmr" eval-mlm "$1" --data "$DEMO_DIR/data-bin" --mask-seed "$3" --results-dir "$2" | tail -n 1
}
start=$SECONDS
rm -rf "$OUT/eval" "$OUT/results"
for run in "${runs[@]}"; do
  dir="$OUT/runs/$run"
  if [[ -f $dir/checkpoints/checkpoint_last.pt ]]; then  # a finished run is kept: delete $OUT to redo it
    step "1/4 train $run: kept from an earlier call ($dir)"; continue
  fi
  step "1/4 train $run"
  rm -rf "$dir"; mkdir -p "$dir"
  # shellcheck disable=SC2086  # run_args holds several overrides
  "${train[@]}" ${run_args[$run]} "checkpoint.save_dir=$dir/checkpoints" "common.log_file=$dir/train.log" \
    "hydra.run.dir=$dir/hydra" "$@" > "$dir.stdout" 2>&1 || { tail -30 "$dir.stdout" >&2; exit 1; }
  model_dir "$dir/checkpoints/checkpoint_last.pt" "$dir/model"
done

step "2/4 average the two MLM continuations"
"$BIN/xlmr" average "$OUT/runs/mlm_seed2/checkpoints/checkpoint_last.pt" \
  "$OUT/runs/mlm_seed3/checkpoints/checkpoint_last.pt" --dict "$DEMO_DIR/spm/dict.txt" \
  --out "$OUT/runs/mlm_avg/model/model.pt"

step "3/4 evaluate: validation perplexity and UDHR retrieval"
declare -A models=([release]="$DEMO_DIR/release")
for run in "${runs[@]}" mlm_avg; do models[$run]="$OUT/runs/$run/model"; done
for run in release mlm_seed2 mlm_seed3 mlm_avg adversarial student_mlm student_distilled; do
  dir=${models[$run]}
  mkdir -p "$OUT/eval"
  score_ppl "$dir/model.pt" "$OUT/results/valid_ppl/$run" 1 2>> "$OUT/eval/$run.log" \
    || { tail -30 "$OUT/eval/$run.log" >&2; exit 1; }
  layers=$("$BIN/python" -c "import sys; from fairseq_xlmr import checkpoint
print(checkpoint.load(sys.argv[1])['cfg']['model']['encoder_layers'])" "$dir/model.pt" 2>> "$OUT/eval/$run.log")
  "$BIN/xlmr" eval-retrieval --model-dir "$dir" --data-dir "$DEMO_DIR/corpus/udhr" --pivot en --cpu \
    --report-layer "$layers" --name udhr --out-dir "$OUT/results/udhr/$run" \
    >> "$OUT/eval/$run.log" 2>&1 || { tail -30 "$OUT/eval/$run.log" >&2; exit 1; }
  echo "$run: done"
done
# The same release model on two other validation masks: how much perplexity moves by masking alone.
for seed in 2 3; do
  score_ppl "$DEMO_DIR/release/model.pt" "$OUT/results/valid_ppl/release_masks$seed" "$seed" 2>> "$OUT/eval/release.log"
done

step "4/4 report"
"$BIN/xlmr" report --results-dir "$OUT/results" --out-dir "$OUT" > /dev/null
"$BIN/python" - "$OUT/runs" >> "$OUT/report.md" <<'EOF'
import json, pathlib, sys
# The fusion-specific training signals, from each run's last logged training interval.
print("\n## training signals (last train_inner interval of each run)\n")
print("| run | updates | loss (bits) | adv_acc | adv_lambda | kd_loss (bits) |")
print("|---|---:|---:|---:|---:|---:|")
for log in sorted(pathlib.Path(sys.argv[1]).glob("*/train.log")):
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.startswith('{"epoch"')]
    rows = [row for row in rows if "loss" in row]  # train_inner intervals (the epoch summaries say train_loss)
    if not rows:
        continue
    last = rows[-1]
    cells = [last.get(k, "–") for k in ("num_updates", "loss", "adv_acc", "adv_lambda", "kd_loss")]
    print(f"| {log.parent.name} | " + " | ".join(str(c) for c in cells) + " |")
EOF
cat "$OUT/report.md"
echo
echo "fusion demo finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $OUT/report.md"
