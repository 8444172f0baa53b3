"""`xlmr random-init`: a fresh model with the source checkpoint's config, keys and shapes, loadable as a model dir."""

import pytest
import torch

from fairseq_xlmr import checkpoint, cli, hub
from fairseq_xlmr.experiments.random_init import TRAINING_STATE
from tests.fixtures.tiny_finetune import pretrained_model_dir


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    return pretrained_model_dir(tmp_path_factory.mktemp("pretrained"), updates=2)


def test_random_init_has_the_source_keys_and_shapes_but_new_weights(source_dir, tmp_path):
    assert cli.main(["random-init", str(source_dir), str(tmp_path / "random"), "--seed", "3"]) == 0
    source = checkpoint.load(source_dir / "model.pt")
    fresh = checkpoint.load(tmp_path / "random" / "model.pt")
    assert list(fresh["model"]) == list(source["model"])
    assert {k: v.shape for k, v in fresh["model"].items()} == {k: v.shape for k, v in source["model"].items()}
    assert fresh["cfg"]["model"] == source["cfg"]["model"]
    assert "last_optimizer_state" not in fresh and fresh["optimizer_history"][-1]["num_updates"] == 0
    assert fresh["extra_state"]["train_iterator"]["epoch"] == 1
    assert set(TRAINING_STATE) <= set(source)
    changed = [k for k, v in source["model"].items() if v.is_floating_point() and not torch.equal(v, fresh["model"][k])]
    assert "encoder.sentence_encoder.embed_tokens.weight" in changed
    assert all(any(k.startswith(f"encoder.sentence_encoder.layers.{i}.") for k in changed) for i in range(2))
    # BERT init: N(0, 0.02) weights, as pretraining starts.
    std = fresh["model"]["encoder.sentence_encoder.layers.0.fc1.weight"].std().item()
    assert std == pytest.approx(0.02, rel=0.1)

    # The same seed gives the same model; another seed another.
    cli.main(["random-init", str(source_dir), str(tmp_path / "again"), "--seed", "3"])
    cli.main(["random-init", str(source_dir), str(tmp_path / "other"), "--seed", "4"])
    again = checkpoint.load(tmp_path / "again" / "model.pt")["model"]
    other = checkpoint.load(tmp_path / "other" / "model.pt")["model"]
    key = "encoder.sentence_encoder.layers.0.fc1.weight"
    assert torch.equal(again[key], fresh["model"][key]) and not torch.equal(other[key], fresh["model"][key])


def test_random_init_dir_loads_with_from_pretrained(source_dir, tmp_path):
    cli.main(["random-init", str(source_dir), str(tmp_path / "random")])
    pretrained, random = hub.from_pretrained(str(source_dir)), hub.from_pretrained(str(tmp_path / "random"))
    tokens = pretrained.encode("hello world")
    assert torch.equal(random.encode("hello world"), tokens)  # same dict and SentencePiece model
    a, b = pretrained.extract_features(tokens), random.extract_features(tokens)
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_random_init_loads_as_fairseq_loads_a_finetune_from_model_checkpoint(source_dir, tmp_path):
    from fairseq import checkpoint_utils

    cli.main(["random-init", str(source_dir), str(tmp_path / "random")])
    state = checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "random" / "model.pt"))  # upgrades the state
    assert state["extra_state"]["train_iterator"]["epoch"] == 1  # what the trainer reads on --finetune-from-model
    assert state.get("last_optimizer_state") is None


def test_a_missing_source_file_is_named(source_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing/model.pt not found"):
        cli.run(["random-init", str(tmp_path / "missing"), str(tmp_path / "out")])
