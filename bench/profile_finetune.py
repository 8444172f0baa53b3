"""Where a fine-tuning update's time goes: forward, backward, gradient clipping, optimizer, per protocol, with the
layers run on the packed real tokens and on the padded batch.

    .venv/bin/python -m bench.profile_finetune --model-dir models/multilingual-e5-small --data-dir DIR/sentiment

One batch of `--batch` English training sentences (padded to the longest, as fairseq batches them), a sentence
head on the mean of the states, fused AdamW over the parameters that train; each phase is the mean over
`--steps` updates after two of warm-up, in this process (so run it alone on the machine).
"""

import argparse
import time
from pathlib import Path

import torch

PHASES = ("forward", "backward", "clip", "optimizer", "zero_grad")
PROTOCOLS = {"full": (False, 0), "embeddings frozen": (True, 0), "top 4 layers (transfer)": (True, 8)}


def batch_of(hub, path: Path, size: int):
    lines = [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()[1:size + 1]]
    ids = [hub.encode(line)[:128] for line in lines]
    tokens = torch.full((len(ids), max(map(len, ids))), hub.dictionary.pad())
    for row, seq in zip(tokens, ids):
        row[:len(seq)] = seq
    return tokens


def profile(model, tokens, steps: int):
    """Mean seconds of each phase of an update of `model` (its sentence head "s") on `tokens`."""
    target = torch.arange(tokens.shape[0]) % 2
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=True)
    totals = dict.fromkeys(PHASES, 0.0)
    for step in range(steps + 2):
        marks = [time.perf_counter()]
        logits = model(tokens, features_only=True, classification_head_name="s")[0]
        loss = torch.nn.functional.cross_entropy(logits, target)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        marks.append(time.perf_counter())
        optimizer.step()
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        if step >= 2:
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                totals[phase] += (end - start) / steps
    return totals


def main(argv=None):
    from fairseq_xlmr.hub import from_pretrained
    from fairseq_xlmr.modules import packing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data-dir", required=True, help="xlmr fetch-eval-data's sentiment/ directory")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    hub = from_pretrained(args.model_dir)
    tokens = batch_of(hub, Path(args.data_dir) / "en" / "train.tsv", args.batch)
    real = int(tokens.ne(hub.dictionary.pad()).sum())
    print(f"batch {tuple(tokens.shape)}: {real} real tokens, {100 * (1 - real / tokens.numel()):.0f}% padding, "
          f"{torch.get_num_threads()} threads")
    print("| protocol | layers run | " + " | ".join(f"{p} s" for p in PHASES) + " | update s |")
    print("|---|---|" + "---|" * (len(PHASES) + 1))
    share = packing.MIN_PADDING_SHARE
    for name, (frozen_embeddings, frozen_layers) in PROTOCOLS.items():
        for layout, threshold in (("padded", 2.0), ("packed", share)):
            packing.MIN_PADDING_SHARE = threshold
            model = from_pretrained(args.model_dir).model.train()
            model.register_classification_head("s", num_classes=2)
            model.encoder.sentence_encoder.freeze(frozen_embeddings, frozen_layers, cache_bytes=0)
            for name_, parameter in model.encoder.lm_head.named_parameters():  # as fine-tuning: unused, frozen
                if name_ != "weight":
                    parameter.requires_grad_(False)
            times = profile(model, tokens, args.steps)
            print(f"| {name} | {layout} | " + " | ".join(f"{times[p]:.3f}" for p in PHASES)
                  + f" | {sum(times.values()):.3f} |", flush=True)
    packing.MIN_PADDING_SHARE = share


if __name__ == "__main__":
    main()
