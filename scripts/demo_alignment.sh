#!/usr/bin/env bash
# Does contrastive alignment on parallel data help cross-lingual retrieval? (demo scale)
#
# Usage:   scripts/demo_alignment.sh [extra fairseq-hydra-train overrides for every run]
# Needs:   `make demo`'s outputs: demo/corpus/{para,udhr}, demo/spm, demo/data-bin, demo/release/model.pt.
# Steps:   binarise the gettext English->X pairs (xlmr binarize --para-dir) -> continue demo/release for
#          the same number of updates once per run below, the parallel objectives on TRAIN_PAIRS only
#          (hydra_configs/pretrain/alignment_demo.yaml) -> UDHR retrieval xx->en (xlmr eval-retrieval) for
#          the held-out languages (no bitext in training) and the seen ones apart -> tables (xlmr report).
# Expected: 4-8 minutes per run on 1-2 shared cores; the contrastive runs retrieve UDHR translations
#          better than MLM alone, clearly on the seen pairs, less on the held-out languages
#          (docs/alignment.md shows a run).
# Runs:    mlm (MLM only), mlm_seq (+ sequence InfoNCE), mlm_seq_token (+ token InfoNCE on MUSE
#          dictionaries of `xlmr fetch-dictionaries`), mlm_tlm_seq (+ TLM and sequence InfoNCE).
# Env:     DEMO_DIR (default demo/), OUT (default $DEMO_DIR/alignment), TRAIN_PAIRS, UPDATES, SEQ_WEIGHT,
#          RUNS (comma list of the runs above), DICT_DIR (MUSE en-<x>.txt; fetched when missing),
#          SKIP_TRAIN=1 (evaluate the runs already in $OUT again).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=$(realpath -m "${DEMO_DIR:-demo}")
OUT=$(realpath -m "${OUT:-$DEMO_DIR/alignment}")
TRAIN_PAIRS=${TRAIN_PAIRS:-en-de,en-fr,en-es,en-ru,en-tr}  # held out: the other demo languages (it, nl)
UPDATES=${UPDATES:-300}
SEQ_WEIGHT=${SEQ_WEIGHT:-1}
RUNS=${RUNS:-mlm,mlm_seq,mlm_seq_token,mlm_tlm_seq}
DICT_DIR=$(realpath -m "${DICT_DIR:-$OUT/dictionaries}")  # MUSE en-<x>.txt for the token-level run
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

binarize=("$BIN/xlmr" binarize --para-dir "$DEMO_DIR/corpus/para" --spm-model "$DEMO_DIR/spm/sentencepiece.bpe.model"
          --dest-dir "$OUT/para-bin" --valid-lines 200 --dedup --overwrite)
train=("$BIN/fairseq-hydra-train" --config-dir hydra_configs/pretrain --config-name alignment_demo
       "common.user_dir=$PWD/fairseq_xlmr" "task.data=$DEMO_DIR/data-bin" "common.cpu=true"
       "checkpoint.restore_file=$DEMO_DIR/release/model.pt" "optimization.max_update=$UPDATES")
para="task.para_data=$OUT/para-bin task.pairs='$TRAIN_PAIRS'"
declare -A run_args=(
  [mlm]=""
  [mlm_seq]="$para criterion.seq_weight=$SEQ_WEIGHT"
  [mlm_seq_token]="$para criterion.seq_weight=$SEQ_WEIGHT criterion.token_weight=1 task.dictionary_dir=$DICT_DIR"
  [mlm_tlm_seq]="$para criterion.seq_weight=$SEQ_WEIGHT criterion.tlm_weight=1"
)
read -r -a runs <<< "${RUNS//,/ }"
for run in "${runs[@]}"; do
  [[ -v "run_args[$run]" ]] || { echo "RUNS names $run; known runs: ${!run_args[*]}" >&2; exit 2; }
done

step() { echo; echo "== $* ($(date +%T))"; }
start=$SECONDS
step "1/3 binarize parallel pairs (and dictionaries for the token-level run)"
[[ -n "${SKIP_TRAIN:-}" ]] || "${binarize[@]}"
if [[ " ${runs[*]} " == *" mlm_seq_token "* && ! -d "$DICT_DIR" ]]; then
  "$BIN/xlmr" fetch-dictionaries --out-dir "$DICT_DIR" --languages "$(echo "$TRAIN_PAIRS" | sed 's/en-//g')"
fi
for run in "${runs[@]}"; do
  [[ -n "${SKIP_TRAIN:-}" ]] && continue
  step "2/3 train $run ($UPDATES updates from demo/release)"
  dir="$OUT/$run"
  rm -rf "$dir"; mkdir -p "$dir/model"
  # shellcheck disable=SC2086  # run_args holds several overrides (quotes inside are hydra's)
  "${train[@]}" ${run_args[$run]} "checkpoint.save_dir=$dir/checkpoints" "common.log_file=$dir/train.log" \
    "hydra.run.dir=$dir/hydra" "$@"
  # A model dir for eval-retrieval: the checkpoint + the vocabulary it was trained with.
  ln -sf "$dir/checkpoints/checkpoint_last.pt" "$dir/model/model.pt"
  cp "$DEMO_DIR/spm/sentencepiece.bpe.model" "$DEMO_DIR/spm/dict.txt" "$dir/model/"
done

step "3/3 UDHR retrieval"
layers=$(.venv/bin/python -c "import torch,sys; print(torch.load(sys.argv[1], weights_only=False)['cfg']['model']['encoder_layers'])" \
         "$DEMO_DIR/release/model.pt")
# Seen: the X of every en-X training pair; held out: every other UDHR language but the pivot.
seen=$(echo "$TRAIN_PAIRS" | tr ',' '\n' | sed 's/^en-//' | sort | paste -sd,)
heldout=$(ls "$DEMO_DIR/corpus/udhr" | sed -n 's/\.txt$//p' \
          | { grep -vxF -e en $(echo "$seen" | tr ',' '\n' | sed 's/^/-e /') || true; } | paste -sd,)  # may be none
rm -rf "$OUT/retrieval"
# Every run trained in $OUT so far (also those of earlier invocations with other RUNS), and the start point.
trained=$(cd "$OUT" && for d in */model/model.pt; do [[ -e $d ]] && echo "${d%%/*}"; done)
for run in release $trained; do
  model_dir="$OUT/$run/model"; [[ $run == release ]] && model_dir="$DEMO_DIR/release"
  for group in seen heldout; do
    [[ -n ${!group} ]] || continue  # TRAIN_PAIRS covering every UDHR language leaves no held-out group
    "$BIN/xlmr" eval-retrieval --model-dir "$model_dir" --data-dir "$DEMO_DIR/corpus/udhr" --pivot en \
      --languages "${!group}" --report-layer "$layers" --name "udhr_$group" --out-dir "$OUT/retrieval/$group/$run" \
      --cpu | tail -n 1
  done
done
"$BIN/xlmr" report --results-dir "$OUT/retrieval" --out-dir "$OUT/retrieval" | tee "$OUT/report.md"
echo
echo "seen (bitext in training): $seen; held out: $heldout"
echo "alignment demo finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $OUT/report.md"
