# Shared by scripts/slurm/*.sbatch (sourced, not run): one srun task per GPU running fairseq-hydra-train,
# one absolute directory per job, and requeue when the time limit nears.
#
# The caller sets REPO, CONFIG_DIR (pretrain or finetune), CONFIG (a config name in it) and the array
# config_args (the config's required values); "$@" (the sbatch script's arguments) are extra Hydra
# overrides and come last, so they win.
#
# World size: SLURM_NNODES × SLURM_NTASKS_PER_NODE, passed to fairseq (a task started with one GPU
# would otherwise count 1 and train alone). Port: the same for every task, derived from the job id.
# Signals: SLURM sends SIGUSR1 to this shell 180 s before the time limit (--signal=B:USR1@180); we
# pass it to srun, which forwards it to every task; each task saves checkpoint_last.pt at its next
# update and exits 0 (fairseq_xlmr/patches/training_loop.py); then the job requeues itself, keeps its id,
# and resumes from that checkpoint. On SIGTERM (preemption, scancel) the tasks receive it from SLURM
# directly and checkpoint the same way; this shell only waits for them (SLURM's PreemptMode decides
# whether the job comes back).
#
# Env: SAVE_ROOT (required: a shared filesystem), PORT (10000 + job id mod 50000), BIN (the repo's
#      .venv/bin, else fairseq-hydra-train on PATH).

: "${SLURM_JOB_ID:?run this under SLURM (sbatch), which sets SLURM_JOB_ID}"
SAVE_ROOT=${SAVE_ROOT:?set SAVE_ROOT to a directory on a filesystem every node shares}
TASKS_PER_NODE=${SLURM_NTASKS_PER_NODE:?submit with --ntasks-per-node (one task per GPU)}
TASKS_PER_NODE=${TASKS_PER_NODE%%(*}  # some SLURM versions write "8(x2)"
WORLD_SIZE=$((SLURM_NNODES * TASKS_PER_NODE))
PORT=${PORT:-$((10000 + SLURM_JOB_ID % 50000))}
RUN_DIR=$(realpath -m "$SAVE_ROOT")/${SLURM_JOB_NAME:-xlmr}-$SLURM_JOB_ID
BIN=${BIN:-$REPO/.venv/bin}
if [[ ! -x "$BIN/fairseq-hydra-train" ]]; then
  hydra_train=$(command -v fairseq-hydra-train) || { echo "fairseq-hydra-train not found: set BIN" >&2; exit 2; }
  BIN=$(dirname "$hydra_train")
fi
mkdir -p "$RUN_DIR"
# Hydra's callback imports fairseq_xlmr by name (run_config/slurm.yaml): make the checkout importable.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

launch_args=(--config-dir "$REPO/hydra_configs/$CONFIG_DIR" --config-name "$CONFIG" +run_config=slurm
             "common.user_dir=$REPO/fairseq_xlmr")
cluster_args=("distributed_training.distributed_world_size=$WORLD_SIZE"
              "distributed_training.distributed_port=$PORT"
              "checkpoint.save_dir=$RUN_DIR/checkpoints" "common.tensorboard_logdir=$RUN_DIR/tensorboard"
              # One Hydra directory (config + log) per task; each task resolves its own rank. Rank 0's
              # hydra_train.log holds the training stats.
              "hydra.run.dir=$RUN_DIR/hydra/rank\${oc.env:SLURM_PROCID}")

echo "job $SLURM_JOB_ID: $SLURM_NNODES node(s) × $TASKS_PER_NODE task(s) = world size $WORLD_SIZE," \
     "port $PORT, config $CONFIG_DIR/$CONFIG, run dir $RUN_DIR"

srun_pid=
requeue() {
  echo "$(date '+%F %T') SIGUSR1: every task checkpoints at its next update, then job $SLURM_JOB_ID requeues" >&2
  kill -USR1 "$srun_pid" 2>/dev/null || true
  wait "$srun_pid" || true
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
}
wait_for_tasks() {
  echo "$(date '+%F %T') SIGTERM: waiting for the tasks to checkpoint and stop" >&2
  wait "$srun_pid" || true
  exit 143
}
trap requeue USR1
trap wait_for_tasks TERM

srun --kill-on-bad-exit=1 "$BIN/fairseq-hydra-train" "${launch_args[@]}" "${config_args[@]}" \
  "${cluster_args[@]}" "$@" &
srun_pid=$!
wait "$srun_pid"
