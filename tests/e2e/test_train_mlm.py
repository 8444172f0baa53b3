"""Real `fairseq-train` runs (in-process) of XLM-R-style multilingual MLM on a tiny 2-language data-bin."""

import pytest
import torch

from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, json_stats
from tests.fixtures.tiny_bin import make_tiny_data_bin

TINY_ROBERTA = [
    "--arch", "roberta", "--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--max-positions", "64", "--tokens-per-sample", "64",
]
TRAINING = [
    "--cpu", "--num-workers", "0", "--seed", "1", "--dropout", "0", "--attention-dropout", "0",
    "--optimizer", "adam", "--lr", "3e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "5",
    # fairseq's batch_by_size drops the last samples below --required-batch-size-multiple (default 8):
    # valid_sw (5 samples) would be empty.
    "--batch-size", "8", "--required-batch-size-multiple", "1", "--log-interval", "5",
]


@pytest.fixture
def data_bin(tmp_path):
    make_tiny_data_bin(tmp_path / "data-bin", ["en", "sw"], {"en": 300, "sw": 40})
    return tmp_path / "data-bin"


def _floats(stats, key):
    return [float(s[key]) for s in stats if key in s]


def test_xlmr_mlm_trains_and_reports_each_language(data_bin, tmp_path):
    messages = fairseq_train([
        data_bin, "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm",
        *TINY_ROBERTA, *TRAINING, "--max-update", "40", "--valid-subset", "valid,valid_sw",
        "--save-dir", tmp_path / "checkpoints", "--no-epoch-checkpoints",
    ])
    inner = json_stats(messages, key='"loss"')  # train_inner lines
    assert len(inner) == 8 and {"loss_en", "loss_sw", "ppl_sw"} <= set(inner[0])
    losses = _floats(inner, "loss")
    assert losses[-1] < losses[0] - 0.25, losses

    valid = json_stats(messages, key='"valid_loss"')
    assert len(valid) == 5 and {"valid_loss_en", "valid_loss_sw", "valid_ppl_en", "valid_ppl_sw"} <= set(valid[0])
    assert _floats(valid, "valid_loss_en")[-1] < _floats(valid, "valid_loss_en")[0]
    # valid_sw holds the sw half of valid with the same masks: its loss is valid's sw loss.
    assert _floats(json_stats(messages, key='"valid_sw_loss"'), "valid_sw_loss") == _floats(valid, "valid_loss_sw")
    assert not json_stats(messages, key="valid_en_")  # the valid subsets are what the user asked for

    tables = [m for m in messages if m.startswith("language sampling, epoch")]
    assert len(tables) == 5 and all("alpha=0.3, p and q by sentences" in t for t in tables)

    checkpoint = torch.load(tmp_path / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["cfg"]["task"]["_name"] == "xlmr_mlm"
    assert checkpoint["cfg"]["criterion"]["_name"] == "xlmr_mlm"
    assert checkpoint["optimizer_history"][-1]["num_updates"] == 40


def test_stock_multilingual_masked_lm_reads_the_same_layout(data_bin):
    messages = fairseq_train([
        data_bin, "--task", "multilingual_masked_lm", "--criterion", "masked_lm", "--multilang-sampling-alpha", "0.3",
        *TINY_ROBERTA, *TRAINING, "--max-update", "20", "--no-save",
    ])
    assert "loaded 300 examples from: %s" % (data_bin / "en" / "train") in messages
    assert "loaded 40 examples from: %s" % (data_bin / "sw" / "train") in messages
    losses = _floats(json_stats(messages, key='"loss"'), "loss")
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.15, losses
    assert _floats(json_stats(messages, key='"valid_loss"'), "valid_loss")


def test_xlmr_debug_with_language_embeddings_trains_on_the_task_lang_ids(data_bin, tmp_path):
    messages = fairseq_train([
        data_bin, "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm", "--arch", "xlmr_debug",
        "--max-positions", "64", "--tokens-per-sample", "64", "--language-embeddings", *TRAINING,
        "--max-update", "6", "--save-dir", tmp_path / "checkpoints", "--disable-validation",
    ])
    assert len(json_stats(messages, key='"loss"')) >= 1
    state = torch.load(tmp_path / "checkpoints" / "checkpoint_last.pt", weights_only=True)
    assert state["model"]["encoder.sentence_encoder.embed_languages.weight"].shape == (2, 64)  # en, sw
