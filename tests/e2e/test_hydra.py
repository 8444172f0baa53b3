"""`fairseq-hydra-train common.user_dir=...` with our YAML registers and uses every component."""

import torch

from tests.fixtures.fairseq_run import REPO, USER_DIR, run_cli
from tests.fixtures.tiny_bin import make_tiny_data_bin


def test_hydra_train_with_the_debug_config(tmp_path):
    from fairseq_cli.hydra_train import cli_main

    data = tmp_path / "data-bin"
    make_tiny_data_bin(data, ["en", "sw"], {"en": 200, "sw": 40})
    run_cli(cli_main, [
        "--config-dir", f"{REPO}/hydra_configs/pretrain", "--config-name", "debug",
        f"common.user_dir={USER_DIR}", f"task.data={data}", "common.cpu=true",
        f"checkpoint.save_dir={tmp_path / 'checkpoints'}", f"hydra.run.dir={tmp_path / 'outputs'}",
        "optimization.max_update=3", "model.max_positions=64", "task.tokens_per_sample=64",
        "dataset.batch_size=8",
    ], "fairseq-hydra-train")
    state = torch.load(tmp_path / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    cfg = state["cfg"]
    assert (cfg["task"]["_name"], cfg["criterion"]["_name"]) == ("xlmr_mlm", "xlmr_mlm")
    assert cfg["optimizer"]["_name"] == "xlmr_fused_adam" and cfg["model"]["_name"] == "xlmr_debug"
    assert cfg["model"]["encoder_layers"] == 2 and cfg["task"]["multilang_sampling_alpha"] == 0.3
    assert state["optimizer_history"][-1]["num_updates"] == 3
    assert state["model"]["encoder.sentence_encoder.embed_tokens.weight"].shape[1] == 64
