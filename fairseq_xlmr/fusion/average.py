"""`xlmr average`: uniform or weighted parameter averaging of checkpoints (model soups / checkpoint averaging).

Averaging the last checkpoints of one run (Vaswani et al., 2017), several fine-tuned runs from one
initialisation (Wortsman et al., 2022) or models that share an architecture and a dictionary. The
result is a normal fairseq checkpoint: `hub.from_pretrained`, `fairseq-train --finetune-from-model`
and `xlmr eval-mlm` read it like any other.
"""

import io
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from fairseq.data import Dictionary
from omegaconf import OmegaConf

from fairseq_xlmr import checkpoint
from fairseq_xlmr.checkpoint import embedding_rows
from fairseq_xlmr.files import DICT_FILE, SPM_FILE, write_atomic

# fairseq's checkpoint names: checkpoint_<epoch>_<update>.pt (--save-interval-updates) and checkpoint<epoch>.pt.
UPDATE_CHECKPOINT = re.compile(r"^checkpoint_(\d+)_(\d+)\.pt$")
EPOCH_CHECKPOINT = re.compile(r"^checkpoint(\d+)\.pt$")


def parse_weights(text: Optional[str], n: int) -> List[float]:
    """`"1,3"` -> [0.25, 0.75]; None -> uniform. Weights must be >= 0 with a positive sum."""
    if text is None:
        return [1.0 / n] * n
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"`--weights` must be comma-separated numbers, got {text!r}; e.g. --weights 1,1,2.") from None
    if len(weights) != n:
        raise ValueError(f"`--weights` has {len(weights)} values for {n} checkpoints ({text!r}); give one per checkpoint.")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"`--weights` must be >= 0 with a positive sum, got {text!r}.")
    total = sum(weights)
    return [w / total for w in weights]


def last_k_checkpoints(save_dir, k: int) -> List[Path]:
    """The `k` newest checkpoints of a run: by update number, or by epoch when none are numbered by update."""
    save_dir = Path(save_dir)
    if k < 1:
        raise ValueError(f"`--last-k` must be at least 1, got {k}.")
    if not save_dir.is_dir():
        raise ValueError(f"`--save-dir` {str(save_dir)!r} is not a directory; give a run's checkpoint directory.")
    by_update = sorted((int(m.group(2)), save_dir / m.group(0))
                       for m in map(UPDATE_CHECKPOINT.match, os.listdir(save_dir)) if m)
    by_epoch = sorted((int(m.group(1)), save_dir / m.group(0))
                      for m in map(EPOCH_CHECKPOINT.match, os.listdir(save_dir)) if m)
    found = by_update or by_epoch
    if len(found) < k:
        raise ValueError(f"`--last-k {k}` but {save_dir} holds {len(found)} numbered checkpoints "
                         f"({', '.join(p.name for _, p in found) or 'none'}); train with --save-interval-updates "
                         f"and --keep-interval-updates >= {k}, or lower K.")
    return [path for _, path in found[-k:]]


def average_state_dicts(states: Sequence[Dict[str, torch.Tensor]], weights: Sequence[float],
                        names: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Σ_i w_i · θ_i key by key, accumulated in float64 and cast back to each tensor's dtype.

    Every state must have the same keys and shapes (else ValueError naming the first mismatch).
    Non-float tensors (integer buffers) cannot be averaged: they must be equal and are copied.
    """
    first_keys = list(states[0])
    for state, name in zip(states[1:], names[1:]):
        if set(state) != set(first_keys):
            only_first = [k for k in first_keys if k not in state]
            only_this = [k for k in state if k not in states[0]]
            raise ValueError(f"{name} and {names[0]} have different parameters: only in {names[0]}: "
                             f"{only_first[:3]}, only in {name}: {only_this[:3]}; only checkpoints of one "
                             f"architecture (and the same heads) can be averaged.")
        for key in first_keys:
            if state[key].shape != states[0][key].shape:
                raise ValueError(f"{name} and {names[0]} differ in shape at {key!r}: {tuple(state[key].shape)} vs "
                                 f"{tuple(states[0][key].shape)}; only checkpoints of one architecture and "
                                 f"dictionary can be averaged.")
    averaged = {}
    for key in first_keys:
        tensors = [state[key] for state in states]
        if not tensors[0].is_floating_point():
            if any(not torch.equal(t, tensors[0]) for t in tensors[1:]):
                raise ValueError(f"non-float tensor {key!r} differs between the checkpoints; it cannot be averaged.")
            averaged[key] = tensors[0].clone()
            continue
        total = torch.zeros(tensors[0].shape, dtype=torch.float64)
        for weight, tensor in zip(weights, tensors):
            total.add_(tensor.to(torch.float64), alpha=weight)
        averaged[key] = total.to(tensors[0].dtype)
    return averaged


def dictionary_candidates(path: Path, state) -> List[Path]:
    """Where a checkpoint's dict.txt may be: beside it, then in its run's (first) task.data dir, which a
    relative task.data names from the directory the run was started in."""
    candidates = [path.parent / DICT_FILE]
    cfg = state.get("cfg")
    data = None
    if cfg is not None and cfg.get("task") is not None:
        task = OmegaConf.to_container(cfg["task"]) if OmegaConf.is_config(cfg["task"]) else cfg["task"]
        data = task.get("data")
    if data:
        candidates.append(Path(str(data).split(":")[0]) / DICT_FILE)
    return candidates


def find_dictionary(path: Path, state) -> Optional[Path]:
    """The first of `dictionary_candidates` that exists, else None."""
    return next((c for c in dictionary_candidates(path, state) if c.is_file()), None)


def recorded_fingerprint(state) -> str:
    """The `model.dictionary_fingerprint` a checkpoint was saved with (cfg, or legacy args); "" when none."""
    model = (state.get("cfg") or {}).get("model")
    if model is None:
        model = state.get("args")
    if isinstance(model, dict) or OmegaConf.is_config(model):
        return model.get("dictionary_fingerprint") or ""
    return getattr(model, "dictionary_fingerprint", "") or ""


def check_fingerprints(paths: Sequence[Path], states) -> None:
    """Checkpoints that recorded the dictionary they were trained with must have recorded the same one:
    equal shapes do not make equal vocabularies, and averaging rows of different pieces is meaningless."""
    recorded = [(path, fp) for path, fp in zip(paths, map(recorded_fingerprint, states)) if fp]
    for path, fingerprint in recorded[1:]:
        ref_path, ref = recorded[0]
        if fingerprint != ref:
            raise ValueError(f"{path} and {ref_path} were trained with different dictionaries "
                             f"(`model.dictionary_fingerprint` {fingerprint} vs {ref}); parameters of different "
                             "vocabularies cannot be averaged: average only checkpoints of one vocabulary.")


def check_dictionaries(paths: Sequence[Path], states, dict_files: Sequence[Optional[Path]]) -> None:
    """A dictionary for every checkpoint, the same symbols in all, and each checkpoint's embedding rows
    fitting its dictionary."""
    loaded = []
    for path, state, dict_file in zip(paths, states, dict_files):
        if dict_file is None:
            looked = ", ".join(str(c) for c in dictionary_candidates(path, state))
            raise ValueError(f"no dict.txt found for {path} (looked at {looked}; a relative task.data is read "
                             f"from the current directory, {os.getcwd()}); without it the vocabulary cannot be "
                             "checked. Pass --dict (one for all checkpoints or one each), or run from the "
                             "directory the training ran in.")
        dictionary = Dictionary.load(str(dict_file))
        rows = embedding_rows(state["model"])
        # The MLM task appends <mask> after loading dict.txt; fine-tuned models keep that row.
        if rows not in (len(dictionary), len(dictionary) + 1):
            raise ValueError(f"{path} has {rows} embedding rows but {dict_file} gives {len(dictionary)} entries "
                             f"(+1 for <mask>); that dictionary does not belong to this checkpoint. Fix --dict.")
        loaded.append((path, dict_file, dictionary))
    for path, dict_file, dictionary in loaded[1:]:
        ref_path, ref_file, ref = loaded[0]
        if dictionary.symbols != ref.symbols:
            first = next((i for i, (a, b) in enumerate(zip(ref.symbols, dictionary.symbols)) if a != b),
                         min(len(ref), len(dictionary)))
            raise ValueError(f"{path} and {ref_path} use different dictionaries ({dict_file} vs {ref_file}, first "
                             f"difference at id {first}); parameters of different vocabularies cannot be averaged.")


def average_checkpoints(paths: Sequence, weights: Optional[Sequence[float]] = None,
                        dict_files: Optional[Sequence] = None):
    """The first checkpoint's state with its `model` replaced by the (weighted) average of all.

    The optimizer state is dropped (it belongs to one run's parameters, not the average):
    resume from the output with `--finetune-from-model` or `--reset-optimizer`.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no checkpoints to average: give checkpoint files or --last-k K --save-dir DIR.")
    for path in paths:
        if not path.is_file():
            raise ValueError(f"checkpoint {str(path)!r} does not exist.")
    weights = list(weights) if weights is not None else [1.0 / len(paths)] * len(paths)
    states = [checkpoint.load(path) for path in paths]
    for path, state in zip(paths, states):
        if "model" not in state:
            raise ValueError(f"{path} has no `model` state dict: not a fairseq checkpoint.")
    check_fingerprints(paths, states)
    if dict_files is None:
        dict_files = [find_dictionary(path, state) for path, state in zip(paths, states)]
    check_dictionaries(paths, states, [Path(d) if d else None for d in dict_files])
    out = dict(states[0])
    out["model"] = average_state_dicts([s["model"] for s in states], weights, [str(p) for p in paths])
    out.pop("last_optimizer_state", None)
    if "criterion" in out:
        # Criterion parameters (a distillation projection, a discriminator) are averaged like the model's.
        crit = [s.get("criterion") for s in states]
        out["criterion"] = average_state_dicts(crit, weights, [str(p) for p in paths]) if all(crit) else None
    out["extra_state"] = dict(out.get("extra_state") or {}, averaged_from=[str(p) for p in paths],
                              averaging_weights=list(weights))
    return out, dict_files


def save(state, out: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(out, buffer.getvalue())


def run(args) -> int:
    if args.last_k and args.checkpoints:
        raise ValueError("give checkpoint files or `--last-k` with `--save-dir`, not both.")
    if args.last_k:
        if not args.save_dir:
            raise ValueError("`--last-k` needs `--save-dir`, the run's checkpoint directory.")
        paths = last_k_checkpoints(args.save_dir, args.last_k)
    else:
        paths = [Path(p) for p in args.checkpoints]
    if len(paths) < 1:
        raise ValueError("no checkpoints to average: give checkpoint files or --last-k K --save-dir DIR.")
    weights = parse_weights(args.weights, len(paths))
    dict_files = None
    if args.dict:
        dict_files = [Path(d) for d in args.dict.split(",")]  # one per checkpoint: repeats allowed
        if len(dict_files) == 1:
            dict_files = dict_files * len(paths)
        if len(dict_files) != len(paths):
            raise ValueError(f"`--dict` has {len(dict_files)} files for {len(paths)} checkpoints; give one for "
                             "all or one per checkpoint.")
        for d in dict_files:
            if not d.is_file():
                raise ValueError(f"`--dict` file {str(d)!r} does not exist.")
    out = Path(args.out)
    if out.resolve() in {p.resolve() for p in paths}:
        raise ValueError(f"`--out` {out} is one of the inputs; write the average to a new file.")
    state, dict_files = average_checkpoints(paths, weights, dict_files)
    save(state, out)
    # Make the output a model dir when the vocabulary files are at hand and not there yet.
    for name, source in ((DICT_FILE, dict_files[0]),
                         (SPM_FILE, dict_files[0].parent / SPM_FILE if dict_files[0] else None)):
        if source is not None and Path(source).is_file() and not (out.parent / name).exists():
            shutil.copyfile(source, out.parent / name)
    print(f"averaged {len(paths)} checkpoints -> {out}")
    for path, weight in zip(paths, weights):
        print(f"  {weight:.4f}  {path}")
    return 0
