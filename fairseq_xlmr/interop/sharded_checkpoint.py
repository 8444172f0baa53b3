"""A sharded checkpoint -> one unsharded fairseq checkpoint (`xlmr consolidate`).

`--ddp-backend fully_sharded --use-sharded-state` writes one file per rank, `<name>-shard<rank>.pt`, each holding
that rank's chunk (dimension 0, cut as `torch.chunk` cuts it) of every sharded tensor and Adam moment, and in its
`fsdp_metadata` which keys are sharded, the world size, its rank and the run it came from
(`fairseq_xlmr/patches/fully_sharded.py`). Concatenating the chunks in rank order gives back the whole tensors
exactly. The result is the checkpoint an unsharded run would have written: `model.pt` for the hub, fine-tuning
(`--finetune-from-model`) and `xlmr export-hf`; with the training state, a checkpoint that a run of any world
size, sharded or not, resumes from (`--restore-file`).
"""

import re
import shutil
from pathlib import Path
from typing import Dict, List

from fairseq_xlmr import checkpoint
from fairseq_xlmr.files import DICT_FILE, SPM_FILE
from fairseq_xlmr.fusion.average import find_dictionary, save
from fairseq_xlmr.modules.sharding import concat_chunks

SHARD = re.compile(r"^(?P<base>.+)-shard(?P<rank>\d+)\.pt$")


def shard_files(path) -> List[Path]:
    """Every shard of the checkpoint that `path` names: one of its shard files, or its unsharded name
    (`checkpoint_last.pt` for `checkpoint_last-shard*.pt`); sorted by rank, none missing."""
    path = Path(path)
    match = SHARD.match(path.name)
    base = match.group("base") if match else path.name[:-len(".pt")] if path.name.endswith(".pt") else path.name
    found = {}
    for candidate in path.parent.glob(f"{base}-shard*.pt"):
        m = SHARD.match(candidate.name)
        if m and m.group("base") == base:
            found[int(m.group("rank"))] = candidate
    if not found:
        raise FileNotFoundError(f"no shard files {path.parent / base}-shard<rank>.pt: give a file written by "
                                "--ddp-backend fully_sharded --use-sharded-state (e.g. checkpoint_last-shard0.pt).")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise ValueError(f"{path.parent / base}-shard<rank>.pt lacks rank(s) {missing}: every rank's file is needed.")
    return [found[rank] for rank in sorted(found)]


def check_shards(paths: List[Path], states: List[dict]) -> None:
    """Shards of one save of one run, all of them, in rank order."""
    metas = [state.get("fsdp_metadata") or {} for state in states]
    for path, meta in zip(paths, metas):
        if not meta.get("sharded_state"):
            raise ValueError(f"{path} is not a shard of a sharded checkpoint (no `fsdp_metadata` with sharded_state): "
                             "it already holds whole tensors; use it as it is.")
    worlds = {meta["world_size"] for meta in metas}
    if worlds != {len(paths)}:
        raise ValueError(f"the shards {paths[0].name}... say they were written by {sorted(worlds)} ranks, but "
                         f"{len(paths)} files were found; files of different runs are mixed in {paths[0].parent}.")
    if [meta["rank"] for meta in metas] != list(range(len(paths))):
        raise ValueError(f"the shard files' ranks are {[meta['rank'] for meta in metas]}, not 0..{len(paths) - 1}: "
                         "a file was renamed or copied in from elsewhere.")
    runs = {meta["run_id"] for meta in metas}
    updates = {state["optimizer_history"][-1]["num_updates"] for state in states}
    if len(runs) != 1 or len(updates) != 1:
        raise ValueError(f"the shard files {paths[0].parent}/{paths[0].name}... come from different saves (updates "
                         f"{sorted(updates)}, {len(runs)} run(s)): a save was cut short. Consolidate an earlier "
                         "complete set (checkpoint_<epoch>_<update>-shard*.pt).")


def join(states: List[Dict], sharded: set) -> Dict:
    """One state dict: the keys in `sharded` concatenated in rank order, the others (replicated) from rank 0."""
    return {key: concat_chunks([state[key] for state in states]) if key in sharded else value
            for key, value in states[0].items()}


def consolidate(paths: List[Path], training_state: bool = False) -> dict:
    """The unsharded checkpoint of the shard files `paths` (rank order). Without `training_state` the optimizer
    state is left out, as a model file needs none."""
    states = [checkpoint.load(path) for path in paths]
    check_shards(paths, states)
    out = dict(states[0])
    out["model"] = join([state["model"] for state in states], set(states[0]["fsdp_metadata"]["sharded_keys"]))
    del out["fsdp_metadata"]
    optimizer_states = [state.get("last_optimizer_state") for state in states]
    out.pop("last_optimizer_state", None)
    if training_state and all(optimizer_states):
        first = optimizer_states[0]
        sharded = {(index, key) for index, key in first.get("sharded", [])}
        moments = {index: {key: concat_chunks([s["state"][index][key] for s in optimizer_states])
                           if (index, key) in sharded else value
                           for key, value in entries.items()}
                   for index, entries in first["state"].items()}
        out["last_optimizer_state"] = {"state": moments, "param_groups": first["param_groups"]}
    return out


def run(args) -> int:
    paths = shard_files(args.checkpoint)
    out = Path(args.out)
    if out.resolve() in {p.resolve() for p in paths}:
        raise ValueError(f"`--out` {out} is one of the shard files; write the consolidated checkpoint to a new file.")
    state = consolidate(paths, training_state=args.training_state)
    save(state, out)
    # A model dir needs the vocabulary beside model.pt: copy it from beside the shards or the run's task.data.
    dictionary = find_dictionary(paths[0], state)
    for name, source in ((DICT_FILE, dictionary), (SPM_FILE, dictionary.parent / SPM_FILE if dictionary else None)):
        if source is not None and source.is_file() and not (out.parent / name).exists():
            shutil.copyfile(source, out.parent / name)
    updates = state["optimizer_history"][-1]["num_updates"]
    kept = "with" if "last_optimizer_state" in state else "without"
    print(f"consolidated {len(paths)} shards ({paths[0].name}..., update {updates}) -> {out}, {kept} optimizer state")
    return 0
