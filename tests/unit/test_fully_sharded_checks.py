"""What `--ddp-backend fully_sharded` cannot run is refused before any data or model is loaded, naming the field,
the value and the fix; and the pieces of a sharded checkpoint join back exactly."""

import pytest
import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from fairseq_xlmr.interop import sharded_checkpoint
from fairseq_xlmr.modules import sharding
from fairseq_xlmr.patches.fully_sharded import check_config
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train
from tests.fixtures.tiny_bin import make_tiny_data_bin

BASE = ["--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm", "--arch", "xlmr_debug", "--cpu",
        "--optimizer", "xlmr_fused_adam", "--lr", "1e-3", "--batch-size", "4", "--ddp-backend", "fully_sharded",
        "--distributed-world-size", "2", "--distributed-backend", "gloo"]


def config(*extra):
    parser = options.get_training_parser()
    return convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, ["data-bin", *BASE, *extra]))


def test_a_supported_sharded_config_passes():
    check_config(config())
    check_config(config("--use-sharded-state", "--checkpoint-activations", "--bf16-autocast"))


@pytest.mark.parametrize("extra, message", [
    (["--distributed-world-size", "1"], "`distributed_world_size` is 1: sharding splits parameters"),
    (["--optimizer", "adam"], "`optimizer` is 'adam' with ddp_backend 'fully_sharded'"),
    (["--implementation", "apex"], "`optimizer.implementation` is 'apex'"),
    (["--fp16"], "`common.fp16` is true with ddp_backend 'fully_sharded'"),
    (["--arch", "roberta_base"], "with model 'roberta_base'; this backend shards fairseq_xlmr's xlmr_encoder"),
    (["--cpu-offload"], "`distributed_training.cpu_offload` is True"),
    (["--zero-sharding", "os"], "`distributed_training.zero_sharding` is os"),
    (["--store-ema"], "`ema.store_ema` is True"),
])
def test_what_sharding_cannot_run_is_refused_with_the_fix(extra, message):
    with pytest.raises(ValueError, match="Fix: ") as err:
        check_config(config(*extra))
    assert message in str(err.value)


def test_other_backends_are_not_checked():
    check_config(config("--ddp-backend", "legacy_ddp", "--optimizer", "adam", "--distributed-world-size", "1"))


def test_sharding_one_process_fails_before_training_and_leaves_the_checkpoint(tmp_path):
    make_tiny_data_bin(tmp_path / "data-bin", ["en"], {"en": 40})
    save_dir = tmp_path / "ckpt"
    save_dir.mkdir()
    (save_dir / "checkpoint_last.pt").write_bytes(b"an earlier run's checkpoint")
    with pytest.raises(ValueError, match="`distributed_world_size` is 1"):
        fairseq_train([tmp_path / "data-bin", *BASE, "--distributed-world-size", "1", "--max-update", "2",
                       "--save-dir", save_dir])
    assert [p.name for p in save_dir.iterdir()] == ["checkpoint_last.pt"]
    assert (save_dir / "checkpoint_last.pt").read_bytes() == b"an earlier run's checkpoint"


def test_chunks_are_torch_chunks_and_join_back_exactly():
    full = torch.randn(5, 3)
    chunks = [torch.chunk(full, 4)[r] if r < len(torch.chunk(full, 4)) else full[:0] for r in range(4)]
    assert [c.shape[0] for c in chunks] == [2, 2, 1, 0]  # what FSDP2 gives 4 ranks of 5 rows
    assert torch.equal(sharding.concat_chunks(chunks), full)
    states = [{"w": c, "version": torch.tensor([3.0])} for c in chunks]
    joined = sharded_checkpoint.join(states, {"w"})
    assert torch.equal(joined["w"], full) and torch.equal(joined["version"], torch.tensor([3.0]))


def test_consolidate_names_missing_and_mixed_shards(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shard files"):
        sharded_checkpoint.shard_files(tmp_path / "checkpoint_last.pt")
    for rank in (0, 2):
        (tmp_path / f"checkpoint_last-shard{rank}.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"lacks rank\(s\) \[1\]"):
        sharded_checkpoint.shard_files(tmp_path / "checkpoint_last-shard0.pt")
    meta = {"sharded_state": True, "world_size": 2, "sharded_keys": []}
    states = [{"fsdp_metadata": dict(meta, rank=r, run_id=run), "optimizer_history": [{"num_updates": u}]}
              for r, run, u in ((0, "a", 8), (1, "b", 4))]
    with pytest.raises(ValueError, match=r"come from different saves \(updates \[4, 8\]"):
        sharded_checkpoint.check_shards([tmp_path / "x-shard0.pt", tmp_path / "x-shard1.pt"], states)
