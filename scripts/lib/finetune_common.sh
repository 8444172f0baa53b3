# Shared by scripts/finetune_*.sh (sourced, not run): the pretrained model, the optimisation and
# model-selection options of XTREME's XLM-R fine-tuning, and the seed loop (`xlmr finetune-seeds`).
#
# The calling script sets NAME (benchmark name in results.json), METRIC (accuracy or f1), the
# array task_args (data and task options) and defaults for XTREME_LR, EPOCHS and BATCH; "$@" (the caller's
# arguments) are extra fairseq-train arguments and come last, so they win.
#
# Env: RECIPE (xtreme: every weight trains, the paper's recipe; transfer: the embeddings and all but the top 4
#      layers frozen, lr 1e-4, which keeps zero-shot transfer on small training sets: see
#      `xlmr finetune-seeds --help`),
#      MODEL (pretrained model.pt; dict.txt and sentencepiece.bpe.model beside it), SPM (a
#      SentencePiece model elsewhere, with its dict.txt beside it), ARCH (xlmr_base; xlmr_xl/xlmr_xxl for
#      pre-LayerNorm checkpoints; sizes are read from MODEL), SEEDS ("1 2 3 4 5"), SAVE_DIR, FP16 (1 on GPU,
#      0 otherwise), XLMR.

XLMR="${XLMR:-$(dirname "${BASH_SOURCE[0]}")/../../.venv/bin/xlmr}"
[[ -x "$XLMR" ]] || XLMR=xlmr  # an installed package instead of the repo's venv
MODEL=${MODEL:-xlmr.base/model.pt}
ARCH=${ARCH:-xlmr_base}
SEEDS=${SEEDS:-1 2 3 4 5}
RECIPE=${RECIPE:-xtreme}
# The caller's XTREME_LR for the paper's recipe; the transfer recipe trains only the top layers, at a higher rate.
LR=${LR:-$([[ $RECIPE == transfer ]] && echo 1e-4 || echo "$XTREME_LR")}
read -r -a seeds <<< "$SEEDS"

model_args=(--arch "$ARCH" --finetune-from-model "$MODEL")
[[ -n "${SPM:-}" ]] && model_args+=(--spm-model "$SPM")
# HF AdamW defaults (β 0.9/0.999, ε 1e-8, no weight decay), gradient clipping at 1, and a learning
# rate decaying linearly to 0 over EPOCHS epochs (finetune-seeds --epochs sets the horizon).
optim_args=(--optimizer xlmr_fused_adam --lr "$LR" --lr-scheduler polynomial_decay --clip-norm 1.0
            --batch-size "$BATCH" --required-batch-size-multiple 1)
if [[ -z "${FP16:-}" ]]; then  # mixed precision wherever a GPU is there
  python="$(dirname "$XLMR")/python"
  [[ -x "$python" ]] || python=python3
  FP16=$("$python" -c 'import torch; print(int(torch.cuda.is_available()))')
fi
[[ "$FP16" == 1 ]] && optim_args+=(--fp16)
# One model per seed, selected on the all-language dev average (XLM-R §5); the pretrained LM head
# gets no gradient, which multi-GPU DDP must be told.
select_args=(--best-checkpoint-metric "$METRIC" --maximize-best-checkpoint-metric --no-epoch-checkpoints
             --find-unused-parameters --log-format json --log-interval 100)

"$XLMR" finetune-seeds --name "$NAME" --seeds "${seeds[@]}" --save-dir "$SAVE_DIR" --epochs "$EPOCHS" \
  --recipe "$RECIPE" -- \
  "${task_args[@]}" "${model_args[@]}" "${optim_args[@]}" "${select_args[@]}" "$@"
