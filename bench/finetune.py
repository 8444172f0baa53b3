"""Fine-tuning speed: ours (fairseq-train, xlmr_sentence_classification) vs HF transformers + torch AdamW, same
weights, batches and protocol.

    .venv/bin/python -m bench.finetune --model-dir models/multilingual-e5-small --data-dir DIR/sentiment

- ours: fairseq-train --task xlmr_sentence_classification --optimizer xlmr_fused_adam from the model dir
  (frozen layers without dropout and their states cached per sentence, no optimizer state for frozen or unused
  parameters);
- hf:   the model dir exported with `xlmr export-hf`, loaded as XLMRobertaForSequenceClassification (`<s>` head)
        or XLMRobertaModel + the same dense-tanh-linear head on the mean of the non-pad states, the same
        parameters frozen, torch.optim.AdamW (foreach) with the same learning-rate schedule and gradient
        clipping, in a plain loop over the batches of our task's iterator (same seed, so the same batches).
Each protocol runs `--epochs` epochs of `--train-size` training sentences in a fresh process per stack; a
stack's updates/s is the number of updates over the wall time of all of them (the first epoch, which fills
the frozen-state cache, included), and its peak memory is the process's VmHWM. The stacks of a protocol run
one after the other in interleaved rounds (`--rounds`), so a load change shifts both.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent

# name -> (pooling, fairseq-train freezing flags, learning rate)
PROTOCOLS = {
    "full (XLM-R's recipe, <s> head)": ("cls", [], 2e-5),
    "embeddings frozen": ("mean", ["--freeze-embeddings"], 2e-5),
    "transfer (top 4 layers + head)": ("mean", ["--freeze-layers", "8"], 1e-4),
}


def train_argv(model_dir, data_dir, pooling, freeze, lr, epochs, batch, train_size, save_dir):
    from fairseq_xlmr.experiments.seeds import pretrained_model_args

    return [*pretrained_model_args(Path(model_dir) / "model.pt"), str(data_dir), "--user-dir", str(REPO / "fairseq_xlmr"), "--task", "xlmr_sentence_classification",
            "--criterion", "xlmr_sentence_classification", "--data-format", "tsv", "--text-b-column", "",
            "--train-languages", "en", "--eval-languages", "en", "--max-length", "128", "--pooling", pooling,
            "--arch", "xlmr_base", "--finetune-from-model", str(Path(model_dir) / "model.pt"), *freeze,
            "--optimizer", "xlmr_fused_adam", "--lr", str(lr), "--lr-scheduler", "polynomial_decay",
            "--clip-norm", "1.0", "--batch-size", str(batch), "--required-batch-size-multiple", "1",
            "--max-epoch", str(epochs), "--total-num-update", str(epochs * math.ceil(train_size / batch)),
            "--disable-validation", "--no-save", "--save-dir", str(save_dir),
            "--cpu", "--num-workers", "0", "--seed", "1", "--log-format", "json", "--log-interval", "1000"]


# Child process of ours: fairseq-train with the update steps timed.
_OURS = r"""
import json, sys, time
from fairseq import trainer
from fairseq_cli.train import cli_main
times = []
step = trainer.Trainer.train_step
def timed(self, *args, **kwargs):
    start = time.perf_counter(); out = step(self, *args, **kwargs); times.append(time.perf_counter() - start)
    return out
trainer.Trainer.train_step = timed
sys.argv = ["fairseq-train"] + sys.argv[1:]
cli_main()
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print("RESULT " + json.dumps({"step_s": times, "peak_mem_mb": peak}))
"""

# Child process of HF: the same weights (exported), batches (our task's iterator) and protocol.
_HF = r"""
import json, sys, time, torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
import transformers
spec = json.loads(sys.argv[1]); argv = sys.argv[2:]
args = options.parse_args_and_arch(options.get_training_parser(), argv)
cfg = convert_namespace_to_omegaconf(args)
task = tasks.setup_task(cfg.task); task.load_dataset("train", epoch=1)
pad, labels = task.source_dictionary.pad(), len(task.labels)
torch.manual_seed(1)
if spec["pooling"] == "cls":
    model = transformers.XLMRobertaForSequenceClassification.from_pretrained(spec["hf_dir"], num_labels=labels)
    encoder = model.roberta
    def logits_of(ids):
        return model(input_ids=ids, attention_mask=ids.ne(pad)).logits
else:  # RoBERTa's head (dense, tanh, out_proj) on the mean of the non-pad states
    encoder = transformers.XLMRobertaModel.from_pretrained(spec["hf_dir"], add_pooling_layer=False)
    head = transformers.models.xlm_roberta.modeling_xlm_roberta.XLMRobertaClassificationHead(
        transformers.XLMRobertaConfig.from_pretrained(spec["hf_dir"], num_labels=labels))
    model = torch.nn.ModuleDict({"encoder": encoder, "head": head})
    def logits_of(ids):
        mask = ids.ne(pad)
        states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return head(mean[:, None])
frozen = spec["freeze_layers"]
if spec["freeze_embeddings"] or frozen:
    encoder.embeddings.requires_grad_(False)
for layer in encoder.encoder.layer[:frozen]:
    layer.requires_grad_(False)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=0.0, foreach=True)
updates = spec["epochs"] * len(task.get_batch_iterator(task.dataset("train"), max_sentences=spec["batch"],
    required_batch_size_multiple=1, seed=1).next_epoch_itr(shuffle=True))
schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1 - step / updates))
times = []
for epoch in range(1, spec["epochs"] + 1):
    batches = task.get_batch_iterator(task.dataset("train"), max_sentences=spec["batch"], required_batch_size_multiple=1,
                                      seed=1, epoch=epoch).next_epoch_itr(shuffle=True)
    for sample in batches:
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(logits_of(sample["net_input"]["src_tokens"]), sample["target"],
                                                 reduction="sum")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); schedule.step(); opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print("RESULT " + json.dumps({"step_s": times, "peak_mem_mb": peak}))
"""


def _child(code, argv, threads):
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def small_train_set(data_dir: Path, work: Path, size: int) -> Path:
    """`data_dir`'s English sentiment files with the first `size` training sentences."""
    out = work / "data"
    (out / "en").mkdir(parents=True, exist_ok=True)
    lines = (data_dir / "en" / "train.tsv").read_text(encoding="utf-8").splitlines()
    if len(lines) <= size:
        raise ValueError(f"{data_dir}/en/train.tsv has {len(lines) - 1} sentences; the benchmark needs {size}.")
    (out / "en" / "train.tsv").write_text("\n".join(lines[:size + 1]) + "\n", encoding="utf-8")
    for split in ("dev", "test"):
        (out / "en" / f"{split}.tsv").write_text((data_dir / "en" / f"{split}.tsv").read_text(encoding="utf-8"),
                                                 encoding="utf-8")
    return out


def run(model_dir, data_dir, work_dir, train_size=512, epochs=3, batch=32, rounds=1, threads=None):
    from fairseq_xlmr import cli

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    threads = threads or os.cpu_count()
    hf_dir = work / "hf"
    if not (hf_dir / "config.json").is_file():
        cli.run(["export-hf", str(model_dir), str(hf_dir), "--overwrite"])
    data = small_train_set(Path(data_dir), work, train_size)
    results = {"train_size": train_size, "epochs": epochs, "batch": batch, "threads": threads, "protocols": {}}
    for name, (pooling, freeze, lr) in PROTOCOLS.items():
        frozen = int(freeze[freeze.index("--freeze-layers") + 1]) if "--freeze-layers" in freeze else 0
        spec = {"hf_dir": str(hf_dir), "pooling": pooling, "lr": lr, "epochs": epochs, "batch": batch,
                "freeze_embeddings": "--freeze-embeddings" in freeze, "freeze_layers": frozen}
        runs = {"ours": [], "hf": []}
        for _ in range(rounds):
            with tempfile.TemporaryDirectory(dir=work) as save:
                argv = train_argv(model_dir, data, pooling, freeze, lr, epochs, batch, train_size, save)
                runs["ours"].append(_child(_OURS, argv, threads))
                runs["hf"].append(_child(_HF, [json.dumps(spec), *argv], threads))
        row = {}
        for stack, raw in runs.items():
            steps = [s for r in raw for s in r["step_s"]]
            row[stack] = {"updates": len(steps), "updates_per_s": len(steps) / sum(steps),
                          "median_step_s": median(steps), "peak_mem_mb": max(r["peak_mem_mb"] for r in raw)}
        row["speedup"] = row["ours"]["updates_per_s"] / row["hf"]["updates_per_s"]
        results["protocols"][name] = row
        print(f"  {name}: ours {row['ours']['updates_per_s']:.2f} upd/s, HF {row['hf']['updates_per_s']:.2f} upd/s "
              f"({row['speedup']:.2f}x), peak {row['ours']['peak_mem_mb']:.0f} vs {row['hf']['peak_mem_mb']:.0f} MB",
              flush=True)
    full = results["protocols"][next(iter(PROTOCOLS))]["ours"]["updates_per_s"]
    for row in results["protocols"].values():
        row["ours_over_full"] = row["ours"]["updates_per_s"] / full
    return results


def markdown(results) -> str:
    lines = [f"Fine-tuning speed, multilingual-e5-small on {results['train_size']} English sentiment sentences, "
             f"{results['epochs']} epochs of batch {results['batch']}, {results['threads']} threads (updates/s over "
             "all epochs, the first included):", "",
             "| protocol | ours upd/s | HF upd/s | ours / HF | ours / full | peak MB ours | peak MB HF |",
             "|---|---|---|---|---|---|---|"]
    for name, row in results["protocols"].items():
        lines.append(f"| {name} | {row['ours']['updates_per_s']:.2f} | {row['hf']['updates_per_s']:.2f} | "
                     f"**{row['speedup']:.2f}×** | {row['ours_over_full']:.2f}× | {row['ours']['peak_mem_mb']:,.0f} | "
                     f"{row['hf']['peak_mem_mb']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="model dir (xlmr fetch-pretrained multilingual-e5-small)")
    parser.add_argument("--data-dir", required=True, help="xlmr fetch-eval-data's sentiment/ directory")
    parser.add_argument("--work-dir", default="bench/out/finetune")
    parser.add_argument("--train-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = run(args.model_dir, args.data_dir, args.work_dir, args.train_size, args.epochs, rounds=args.rounds)
    print(markdown(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
