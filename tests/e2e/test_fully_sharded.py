"""`--ddp-backend fully_sharded` on CPU: 2 fairseq-train processes over gloo (torchrun), xlmr_debug, against
legacy_ddp, a crash and its resume, consolidation, activation checkpointing and the refusals.

Every run starts 2 processes (~10 s each on 2 busy cores): the module is in the slow tier.
"""

import re
import shutil

import pytest
import torch

from fairseq_xlmr import checkpoint, cli
from tests.fixtures import sharded_run
from tests.fixtures.sharded_run import TRAINING, losses
from tests.fixtures.tiny_bin import make_tiny_data_bin

pytestmark = pytest.mark.slow

# 10 updates of 2 ranks × 4 sequences × update_freq 2, clipped (every update: gnorm > 0.5), dropout on.
RUN = ["--max-update", "10", "--update-freq", "2", "--clip-norm", "0.5", "--save-interval-updates", "4"]
SHARDED = ["--ddp-backend", "fully_sharded", "--use-sharded-state"]


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    make_tiny_data_bin(root / "data-bin", ["en", "sw"], {"en": 200, "sw": 60})
    return root / "data-bin"


@pytest.fixture(scope="module")
def reference(data_bin, tmp_path_factory):
    """The uninterrupted sharded run: its output and its checkpoint directory."""
    root = tmp_path_factory.mktemp("reference")
    code, output = sharded_run.train(root, [data_bin, *TRAINING, *RUN, *SHARDED, "--save-dir", root / "ckpt"])
    assert code == 0, output[-3000:]
    return output, root / "ckpt"


def shards(directory, name="checkpoint_last"):
    return [checkpoint.load(directory / f"{name}-shard{rank}.pt") for rank in range(2)]


def whole_model(directory, name="checkpoint_last"):
    """The whole parameters of a sharded checkpoint, joined here by hand (rank 0's rows first)."""
    states = shards(directory, name)
    keys = set(states[0]["fsdp_metadata"]["sharded_keys"])
    return {k: torch.cat([s["model"][k] for s in states]) if k in keys else v for k, v in states[0]["model"].items()}


def test_sharded_training_gives_legacy_ddps_losses_and_half_the_bytes_per_rank(reference, data_bin, tmp_path):
    output, ckpt = reference
    code, legacy = sharded_run.train(tmp_path, [data_bin, *TRAINING, *RUN, "--ddp-backend", "legacy_ddp",
                                                "--save-dir", tmp_path / "legacy"])
    assert code == 0, legacy[-3000:]
    ours, theirs = losses(output), losses(legacy)
    assert list(ours) == list(range(1, 11))
    assert max(abs(ours[u] - theirs[u]) for u in ours) < 1e-5, (ours, theirs)
    assert min(ours.values()) < ours[1]  # it trains
    gnorms = [float(sharded_run.stats(output)[u]["gnorm"]) for u in ours]
    assert min(gnorms) > 0.5  # every update was clipped, by the norm summed over the shards
    full = checkpoint.load(tmp_path / "legacy" / "checkpoint_last.pt")["model"]
    sharded = whole_model(ckpt)
    assert sharded.keys() == full.keys()
    assert max((sharded[k] - full[k]).abs().max().item() for k in full) < 1e-5

    # Measured by each rank after its first update: its parameters and Adam state are half of the whole.
    names = set(shards(ckpt)[0]["fsdp_metadata"]["sharded_keys"]) - {"encoder.lm_head.weight"}  # tied: counted once
    unsharded_bytes = sum(full[k].numel() * full[k].element_size() for k in names)
    held = re.findall(r"rank (\d) of 2 holds (\d+) bytes of parameters \(.*? of the unsharded (\d+)\) and (\d+) "
                      r"bytes of optimizer state \(.*? of the unsharded (\d+)\)", output)
    assert sorted(rank for rank, *_ in held) == ["0", "1"]
    for rank, params, whole_params, moments, whole_moments in held:
        assert int(whole_params) == unsharded_bytes
        assert int(whole_moments) == 2 * unsharded_bytes + 4 * len(names)  # exp_avg, exp_avg_sq, a float32 step
        assert 0.49 < int(params) / int(whole_params) < 0.51, (rank, params, whole_params)
        assert 0.49 < int(moments) / int(whole_moments) < 0.51, (rank, moments, whole_moments)
    # Between them the ranks hold each row once (the first rank the extra row of an odd count); only Adam's
    # scalar step is on both.
    assert sum(int(params) for _, params, *_ in held) == unsharded_bytes
    assert sum(int(moments) for *_, moments, _ in held) == 2 * unsharded_bytes + 2 * 4 * len(names)


def test_a_killed_sharded_run_resumes_and_reproduces_the_uninterrupted_one(reference, data_bin, tmp_path):
    output, ckpt = reference
    args = [data_bin, *TRAINING, *RUN, *SHARDED, "--save-dir", tmp_path / "ckpt"]
    # Both ranks checkpoint at update 4, run 5 and 6, and die by SIGKILL as update 7 begins: 5 and 6 are lost.
    proc, marker = sharded_run.start(tmp_path, args, fault=["--hang-before-update", "7"])
    before = losses(sharded_run.kill_when_hung(proc, marker))
    assert proc.returncode != 0
    assert [s["optimizer_history"][-1]["num_updates"] for s in shards(tmp_path / "ckpt")] == [4, 4]
    code, resumed = sharded_run.train(tmp_path, args)
    assert code == 0, resumed[-3000:]
    assert "checkpoint_last-shard0.pt (epoch 1 @ 4 updates)" in resumed
    expected = losses(output)
    assert before == {u: expected[u] for u in range(1, 7)}
    assert losses(resumed) == {u: expected[u] for u in range(5, 11)}  # exactly
    for ours, theirs in zip(shards(tmp_path / "ckpt"), shards(ckpt)):
        for key, value in theirs["model"].items():
            assert torch.equal(ours["model"][key], value), key
        for index, moments in theirs["last_optimizer_state"]["state"].items():
            for key, value in moments.items():
                assert torch.equal(ours["last_optimizer_state"]["state"][index][key], value), (index, key)


def test_consolidation_round_trips_exactly_and_a_sharded_run_resumes_from_it(reference, data_bin, tmp_path):
    output, ckpt = reference
    # Shards -> one checkpoint with the training state: the whole tensors, exactly.
    consolidated = tmp_path / "update4.pt"
    assert cli.main(["consolidate", str(ckpt / "checkpoint_1_4-shard0.pt"), "--out", str(consolidated),
                     "--training-state"]) == 0
    state = checkpoint.load(consolidated)
    assert "fsdp_metadata" not in state and state["optimizer_history"][-1]["num_updates"] == 4
    for key, value in whole_model(ckpt, "checkpoint_1_4").items():
        assert torch.equal(state["model"][key], value), key
    # ... which a sharded run cuts back into the same shards: it continues exactly as the uninterrupted run did.
    code, resumed = sharded_run.train(tmp_path, [data_bin, *TRAINING, *RUN, *SHARDED, "--save-dir", tmp_path / "c",
                                                 "--restore-file", consolidated])
    assert code == 0, resumed[-3000:]
    assert f"Loaded checkpoint {consolidated} (epoch 1 @ 4 updates)" in resumed
    assert losses(resumed) == {u: losses(output)[u] for u in range(5, 11)}
    for ours, theirs in zip(shards(tmp_path / "c"), shards(ckpt)):
        assert all(torch.equal(ours["model"][k], v) for k, v in theirs["model"].items())

    # A model file: no optimizer state, the vocabulary beside it (a model dir).
    assert cli.main(["consolidate", str(ckpt / "checkpoint_last.pt"), "--out", str(tmp_path / "m" / "model.pt")]) == 0
    model = checkpoint.load(tmp_path / "m" / "model.pt")
    assert "last_optimizer_state" not in model and (tmp_path / "m" / "dict.txt").is_file()
    assert all(torch.equal(model["model"][k], v) for k, v in whole_model(ckpt).items())


def test_activation_checkpointing_leaves_the_gradients_unchanged(reference, data_bin, tmp_path):
    output, ckpt = reference
    code, recomputed = sharded_run.train(tmp_path, [data_bin, *TRAINING, *RUN, *SHARDED, "--checkpoint-activations",
                                                    "--save-dir", tmp_path / "ckpt"])
    assert code == 0, recomputed[-3000:]
    # Same dropout masks in the recomputation, so the same gradients: the same norms, losses and weights.
    ours, theirs = sharded_run.stats(recomputed), sharded_run.stats(output)
    assert [(ours[u]["loss"], ours[u]["gnorm"]) for u in ours] == [(theirs[u]["loss"], theirs[u]["gnorm"])
                                                                    for u in theirs]
    assert all(torch.equal(v, whole_model(ckpt)[k]) for k, v in whole_model(tmp_path / "ckpt").items())


def test_shards_of_another_world_size_are_refused_before_training_and_left_alone(reference, data_bin, tmp_path):
    _, ckpt = reference
    save_dir = tmp_path / "ckpt"
    save_dir.mkdir()
    # What 3 ranks would have left: three shard files that say so.
    for rank in range(3):
        state = checkpoint.load(ckpt / f"checkpoint_last-shard{min(rank, 1)}.pt")
        state["fsdp_metadata"] = dict(state["fsdp_metadata"], world_size=3, rank=rank)
        torch.save(state, save_dir / f"checkpoint_last-shard{rank}.pt")
    before = {p.name: p.read_bytes() for p in save_dir.iterdir()}
    code, output = sharded_run.train(tmp_path, [data_bin, *TRAINING, *RUN, *SHARDED, "--save-dir", save_dir])
    assert code != 0
    assert "were written by 3 ranks, but this run has distributed_world_size 2" in output
    assert "xlmr consolidate" in output and "train_inner" not in output
    assert {p.name: p.read_bytes() for p in save_dir.iterdir()} == before


def test_a_sharded_run_trains_from_a_consolidated_model(reference, data_bin, tmp_path):
    """--finetune-from-model with a consolidated model.pt: every rank cuts its chunk, the optimizer starts fresh."""
    _, ckpt = reference
    assert cli.main(["consolidate", str(ckpt / "checkpoint_last-shard1.pt"), "--out", str(tmp_path / "model.pt")]) == 0
    code, output = sharded_run.train(tmp_path, [data_bin, *TRAINING, *SHARDED, "--max-update", "2",
                                                "--finetune-from-model", tmp_path / "model.pt",
                                                "--save-dir", tmp_path / "ckpt"])
    assert code == 0, output[-3000:]
    assert f"loading pretrained model from {tmp_path / 'model.pt'}" in output
    first = losses(output)[1]
    assert first < losses(sharded_run.train(tmp_path, [data_bin, *TRAINING, *SHARDED, "--max-update", "1",
                                                       "--save-dir", tmp_path / "fresh"])[1])[1]
    shutil.rmtree(tmp_path / "fresh")


def test_a_consolidated_xl_layout_model_loads_in_the_hub_and_exports_to_hf_with_parity(tmp_path):
    """xlmr_xl's layout (pre-LayerNorm, a final LayerNorm) at debug size, trained sharded, consolidated."""
    transformers = pytest.importorskip("transformers")
    from fairseq_xlmr import hub
    from fairseq_xlmr.preprocess.binarize import binarize
    from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm

    corpus = make_tiny_corpus(tmp_path / "corpus", languages=("en", "de"), lines=100)
    spm = make_tiny_spm(tmp_path / "spm", corpus, vocab_size=120)
    binarize(corpus, spm["spm"], tmp_path / "data-bin", valid_lines=10, quiet=True)
    xl_small = ["--arch", "xlmr_xl", "--encoder-layers", "2", "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim",
                "128", "--encoder-attention-heads", "4"]
    code, output = sharded_run.train(tmp_path, [tmp_path / "data-bin", *TRAINING, *xl_small, *SHARDED,
                                                "--max-update", "4", "--save-dir", tmp_path / "ckpt"])
    assert code == 0, output[-3000:]
    model_dir = tmp_path / "model"
    assert cli.main(["consolidate", str(tmp_path / "ckpt" / "checkpoint_last-shard0.pt"),
                     "--out", str(model_dir / "model.pt")]) == 0
    shutil.copy(spm["spm"], model_dir / "sentencepiece.bpe.model")
    xlmr = hub.from_pretrained(str(model_dir))
    assert xlmr.model.args.encoder_normalize_before and len(xlmr.model.encoder.sentence_encoder.layers) == 2
    assert cli.main(["export-hf", str(model_dir), str(tmp_path / "hf")]) == 0
    hf = transformers.XLMRobertaXLForMaskedLM.from_pretrained(str(tmp_path / "hf")).eval()
    tokens = xlmr.encode("The cat sees the dog.").unsqueeze(0)
    with torch.no_grad():
        ours = xlmr.model(tokens)[0]
        theirs = hf(input_ids=tokens).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_bf16_computes_in_bfloat16_and_keeps_float32_master_weights_and_gradients(tmp_path):
    """The GPU policy, run on CPU: what CUDA adds (its kernels, NCCL) is not checked here."""
    import json
    import os
    import subprocess
    import sys

    from tests.fixtures.fairseq_run import REPO

    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             "-m", "tests.fixtures.sharded_precision"], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=180)
    line = next((x for x in result.stdout.splitlines() if x.startswith("PRECISION ")), None)
    assert result.returncode == 0 and line, result.stdout[-2000:] + result.stderr[-2000:]
    seen = json.loads(line[len("PRECISION "):])
    assert seen == {"weight": "torch.bfloat16", "output": "torch.bfloat16", "shard": "torch.float32",
                    "grad": "torch.float32", "grads_finite": True}
