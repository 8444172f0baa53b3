"""Pretraining throughput and peak memory: ours vs stock fairseq vs HF transformers, same data and model.

    .venv/bin/python -m bench.throughput --data-bin DIR [--device cpu|cuda] [--updates 60]

- ours:  fairseq-train --task xlmr_mlm --arch xlmr_encoder sizes --optimizer xlmr_fused_adam
         (SDPA attention, LM head on masked tokens only; on CUDA bf16 autocast)
- stock: fairseq-train --task multilingual_masked_lm --arch roberta --optimizer adam
         (on CUDA --amp: fairseq's --bf16 implies --tpu and cannot run on a GPU)
- hf:    XLMRobertaForMaskedLM (sdpa attention) + torch.optim.AdamW in a plain loop over the batches
         of the same task (bf16 autocast on CUDA)
Tokens/s is the median over logging windows after warm-up; tokens are the non-padding input tokens.
The stacks run in interleaved rounds (ours, stock, hf, ours, stock, hf, ...; `--rounds`, default 2), and each
stack's median is over the windows of all its rounds, so a load change during the benchmark shifts every
stack alike instead of biasing the ratio.
Each run is a fresh process, so peak memory (VmHWM on CPU, max allocated on CUDA) is its own (the largest
over rounds).
MFU = FLOPs per token (`flops_per_token`) x tokens/s / the measured dense matmul peak of the same device
in the same precision.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent

# Model and batch shapes of each device's benchmark; `vocab` pads dict.txt to XLM-R's 250,002 rows.
SHAPES = {
    "cpu": {"layers": 4, "dim": 256, "ffn": 1024, "heads": 4, "tokens": 128, "batch": 16, "vocab": None},
    "cuda": {"layers": 12, "dim": 768, "ffn": 3072, "heads": 12, "tokens": 512, "batch": 32, "vocab": 250_002},
}
MASK_PROB = 0.15


def flops_per_token(shape, vocab):
    """Training FLOPs per input token: 6 x (layer parameters) for the matmuls of forward + backward,
    12 x layers x seq_len x dim for attention scores and values, and the LM head (dense + vocabulary
    projection) on the 15 % masked tokens only."""
    d, layers, t = shape["dim"], shape["layers"], shape["tokens"]
    layer_params = layers * (4 * d * d + 2 * d * shape["ffn"])
    return 6 * layer_params + 12 * layers * t * d + 6 * MASK_PROB * (d * d + d * vocab)


def prepare_data(src: Path, dest: Path, vocab):
    """`src` data-bin with dict.txt padded by `madeupwordNNNN` lines (as XLM-R releases are) to `vocab`."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = (src / "dict.txt").read_text(encoding="utf-8").splitlines()
    if vocab is not None:
        lines += [f"madeupword{i:06d} 0" for i in range(vocab - 5 - len(lines))]  # + 4 specials + <mask>
    (dest / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for lang_dir in sorted(p for p in src.iterdir() if (p / "train.idx").exists()):
        if not (dest / lang_dir.name).exists():
            os.symlink(lang_dir.resolve(), dest / lang_dir.name)
    return dest, len(lines) + 5


def _model_args(shape, arch_flag):
    return [arch_flag, "--encoder-layers", shape["layers"], "--encoder-embed-dim", shape["dim"],
            "--encoder-ffn-embed-dim", shape["ffn"], "--encoder-attention-heads", shape["heads"],
            "--max-positions", shape["tokens"], "--tokens-per-sample", shape["tokens"]]


def fairseq_argv(kind, data, shape, updates, window, device, extra_ours=()):
    common = [str(data), "--batch-size", shape["batch"], "--required-batch-size-multiple", "1",
              "--max-update", updates, "--lr", "1e-4", "--lr-scheduler", "polynomial_decay",
              "--total-num-update", updates, "--warmup-updates", "10", "--dropout", "0.1",
              "--log-format", "json", "--log-interval", window, "--no-progress-bar", "--no-save",
              "--disable-validation", "--num-workers", "2" if device == "cuda" else "0", "--seed", "1",
              "--skip-invalid-size-inputs-valid-test", "--multilang-sampling-alpha", "0.3",
              "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-6", "--weight-decay", "0.01"]
    if device == "cpu":
        common.append("--cpu")
    if kind == "ours":
        extra = ["--user-dir", str(REPO / "fairseq_xlmr"), "--task", "xlmr_mlm", "--criterion", "xlmr_mlm",
                 *_model_args(shape, "--arch=xlmr_base"), "--optimizer", "xlmr_fused_adam"]
        if device == "cuda":
            # bf16 matmuls; few distinct batch lengths so cuDNN attention plans are reused
            extra += ["--bf16-autocast", "--pad-to-multiple", "64"]
        extra += list(extra_ours)
    else:
        extra = ["--task", "multilingual_masked_lm", "--criterion", "masked_lm",
                 *_model_args(shape, "--arch=roberta"), "--optimizer", "adam"]
        if device == "cuda":
            extra.append("--amp")
    return [str(a) for a in common + extra]


# Child process for the fairseq runs: train, then report the logged wps and peak memory.
_FAIRSEQ_CHILD = r"""
import json, logging, sys, torch
records = []
class Grab(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if message.startswith("{") and '"wps"' in message and '"train_wps"' not in message:
            records.append(json.loads(message))
from fairseq_cli.train import cli_main
logging.getLogger().addHandler(Grab())
# fairseq resets the CUDA peak counter while training; keep the run's true peak.
torch.cuda.reset_peak_memory_stats = lambda *args, **kwargs: None
sys.argv = ["fairseq-train"] + sys.argv[1:]
cli_main()
peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else \
    int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print("RESULT " + json.dumps({"wps": [float(r["wps"]) for r in records], "peak_mem_mb": peak}))
"""

# Child process for HF: the same task's batches through XLMRobertaForMaskedLM and AdamW.
_HF_CHILD = r"""
import json, sys, time, torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM
spec = json.loads(sys.argv[1]); argv = sys.argv[2:]
args = options.parse_args_and_arch(options.get_training_parser(), argv)
cfg = convert_namespace_to_omegaconf(args)
task = tasks.setup_task(cfg.task); task.load_dataset("train", epoch=1)
device = spec["device"]; torch.manual_seed(1)
config = XLMRobertaConfig(vocab_size=len(task.source_dictionary), hidden_size=spec["dim"],
    num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"], intermediate_size=spec["ffn"],
    max_position_embeddings=spec["tokens"] + 2, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
    bos_token_id=0, eos_token_id=2, attn_implementation="sdpa")
model = XLMRobertaForMaskedLM(config).to(device).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01,
                        **({"fused": True} if device == "cuda" else {"foreach": True}))
batches = task.get_batch_iterator(task.dataset("train"), max_sentences=spec["batch"],
    max_positions=spec["tokens"], ignore_invalid_inputs=True, seed=1, num_workers=2 if device == "cuda" else 0,
    required_batch_size_multiple=1).next_epoch_itr(shuffle=True)
pad = task.source_dictionary.pad()
rates, tokens, start = [], 0, None
for step, sample in enumerate(batches):
    if step == spec["updates"]:
        break
    ids = sample["net_input"]["src_tokens"].to(device, non_blocking=True)
    labels = sample["target"].to(device, non_blocking=True).masked_fill(sample["target"].to(device) == pad, -100)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
        loss = model(input_ids=ids, attention_mask=ids.ne(pad), labels=labels).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    tokens += int(ids.ne(pad).sum())
    if (step + 1) % spec["window"] == 0:
        if device == "cuda": torch.cuda.synchronize()
        now = time.perf_counter()
        if start is not None: rates.append(tokens / (now - start))
        start, tokens = now, 0
peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else \
    int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
print("RESULT " + json.dumps({"wps": rates, "peak_mem_mb": peak}))
"""


def _run_child(code, argv, threads):
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def dense_peak_flops(device, dtype_name):
    """Measured matmul FLOP/s of this device: the denominator of MFU."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    reps, start = 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


# `ours+compile` = ours with --compile-layers (torch.compile of each layer; worth it on GPU, where it fuses the
# elementwise work around the matmuls).
DEFAULT_KINDS = {"cpu": ("ours", "stock", "hf"), "cuda": ("ours", "ours+compile", "stock", "hf")}


def _run_kind(kind, data, shape, updates, window, device, threads):
    """One fresh process of one stack: {"wps": [tokens/s per window], "peak_mem_mb"}."""
    if kind == "hf":
        spec = {**shape, "device": device, "updates": updates, "window": window}
        return _run_child(_HF_CHILD, [json.dumps(spec), *fairseq_argv("ours", data, shape, updates, window, device)],
                          threads)
    extra = ["--compile-layers"] if kind == "ours+compile" else []
    return _run_child(_FAIRSEQ_CHILD, fairseq_argv(kind.split("+")[0], data, shape, updates, window, device,
                                                   extra_ours=extra), threads)


def run(data_bin, work_dir, device="cpu", updates=None, window=None, kinds=None, rounds=2):
    kinds = kinds or DEFAULT_KINDS[device]
    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {rounds}.")
    shape = SHAPES[device]
    updates = updates or (60 if device == "cpu" else 300)
    window = window or (10 if device == "cpu" else 25)
    data, vocab = prepare_data(Path(data_bin).resolve(), Path(work_dir) / f"data-{device}", shape["vocab"])
    threads = None if device == "cuda" else os.cpu_count()
    precision = "bf16" if device == "cuda" else "fp32"
    peak = dense_peak_flops(device, precision)
    flops = flops_per_token(shape, vocab)
    results = {"device": device, "shape": shape, "vocab": vocab, "updates": updates, "precision": precision,
               "flops_per_token": flops, "peak_flops": peak, "rounds": rounds, "runs": {}}
    steady, windows, peak_mem = ({kind: [] for kind in kinds} for _ in range(3))
    for round_ in range(rounds):
        for kind in kinds:
            raw = _run_kind(kind, data, shape, updates, window, device, threads)
            steady[kind] += raw["wps"][2:] or raw["wps"]  # the first windows include warm-up and compilation
            windows[kind].append(raw["wps"])
            peak_mem[kind].append(raw["peak_mem_mb"])
            print(f"  {device} {kind:12s} round {round_ + 1}/{rounds}: {median(raw['wps'][2:] or raw['wps']):,.0f} "
                  f"tokens/s", flush=True)
    for kind in kinds:
        tokens_per_s = median(steady[kind])
        results["runs"][kind] = {"tokens_per_s": tokens_per_s, "peak_mem_mb": max(peak_mem[kind]),
                                 "windows": windows[kind], "mfu": flops * tokens_per_s / peak}
        print(f"  {device} {kind:12s}: {tokens_per_s:,.0f} tokens/s, peak {max(peak_mem[kind]):,.0f} MB, "
              f"MFU {100 * flops * tokens_per_s / peak:.1f}%", flush=True)
    runs = results["runs"]
    for ours in ("ours", "ours+compile"):
        for other in ("stock", "hf"):
            if ours in runs and other in runs:
                results[f"{ours}_over_{other}"] = runs[ours]["tokens_per_s"] / runs[other]["tokens_per_s"]
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", required=True, help="xlmr binarize output (several languages)")
    parser.add_argument("--device", default="cpu", choices=sorted(SHAPES))
    parser.add_argument("--updates", type=int, default=None)
    parser.add_argument("--kinds", default=None, help="comma-separated subset of ours,ours+compile,stock,hf "
                        "(default: ours,stock,hf on CPU; all four on CUDA)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of all stacks (medians pool them)")
    parser.add_argument("--work-dir", default="bench/out/throughput")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    results = run(args.data_bin, args.work_dir, args.device, args.updates,
                  kinds=args.kinds.split(",") if args.kinds else None, rounds=args.rounds)
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
