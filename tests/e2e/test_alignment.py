"""fairseq-train --task xlmr_alignment in-process on a tiny English-German corpus: every objective
(MLM, TLM, sequence and token contrastive) is logged per language / pair, λ follows its schedule,
and the contrastive losses fall."""

import numpy as np
import pytest

from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, json_stats, tiny_model_args
from tests.fixtures.tiny_parallel import make_parallel_data_bin


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_parallel_data_bin(tmp_path_factory.mktemp("align"), pairs=200, valid=10)


def alignment_args(tiny, save_dir, updates, *extra):
    args = tiny_model_args() + [
        str(tiny["data"]), "--user-dir", USER_DIR, "--task", "xlmr_alignment", "--criterion", "xlmr_alignment",
        "--para-data", str(tiny["para"]), "--dictionary-dir", str(tiny["lexicons"]),
        "--para-batch-size", "16", "--max-side-tokens", "16", "--max-update", str(updates),
        "--save-dir", str(save_dir), "--no-save",
    ]
    # tiny_model_args sets --tokens-per-sample 32 and --max-positions 32: room for two 16-token sides.
    return args + list(extra)


def test_every_objective_is_logged_and_contrastive_losses_fall(tiny, tmp_path):
    messages = fairseq_train(alignment_args(
        tiny, tmp_path, 40, "--mlm-weight", "1", "--tlm-weight", "1", "--seq-weight", "0:0,10:1",
        "--token-weight", "1", "--tlm-restart-positions", "--temperature", "0.1", "--pooling", "mean"))
    stats = json_stats(messages, "\"lambda_seq\"")
    steps = [s for s in stats if "num_updates" in s and "train_loss" not in s]
    assert len(steps) == 40
    last = steps[-1]
    for key in ("loss", "mlm_loss", "tlm_loss", "seq_loss", "seq_acc", "token_loss", "loss_en", "loss_de",
                "seq_loss_en-de", "tlm_loss_en-de", "lambda_mlm", "lambda_tlm", "lambda_seq", "lambda_token"):
        assert last.get(key) is not None, key
    # λ_seq follows `0:0,10:1`: 0 at the first update, 0.5 at update 5, 1 from update 10 on.
    lam = [float(s["lambda_seq"]) for s in steps]
    assert lam[0] == 0.0 and lam[5] == pytest.approx(0.5) and all(v == 1.0 for v in lam[10:])
    # The seq objective is not computed while its weight is 0 (no parallel batch needed for it).
    assert steps[0].get("seq_loss") is None and steps[0].get("tlm_loss") is not None

    def mean(key, rows):
        return float(np.mean([float(s[key]) for s in rows]))

    seq_start, seq_end = mean("seq_loss", steps[10:15]), mean("seq_loss", steps[-5:])
    tok_start, tok_end = mean("token_loss", steps[:5]), mean("token_loss", steps[-5:])
    assert seq_end < 0.7 * seq_start, (seq_start, seq_end)  # in-batch chance level is log(16) = 2.77
    assert tok_end < 0.8 * tok_start, (tok_start, tok_end)
    assert mean("seq_acc", steps[-5:]) > 0.5


def test_mlm_only_needs_no_parallel_data(tiny, tmp_path):
    args = tiny_model_args() + [
        str(tiny["data"]), "--user-dir", USER_DIR, "--task", "xlmr_alignment", "--criterion", "xlmr_alignment",
        "--max-update", "3", "--save-dir", str(tmp_path), "--no-save",
    ]
    stats = [s for s in json_stats(fairseq_train(args), "mlm_loss") if "train_loss" not in s]
    assert len(stats) == 3 and all(s.get("seq_loss") is None for s in stats)


def test_parallel_weight_without_parallel_data_is_rejected(tiny, tmp_path):
    args = tiny_model_args() + [
        str(tiny["data"]), "--user-dir", USER_DIR, "--task", "xlmr_alignment", "--criterion", "xlmr_alignment",
        "--seq-weight", "0:0,100:1", "--max-update", "3", "--save-dir", str(tmp_path), "--no-save",
    ]
    with pytest.raises(ValueError, match="para_data"):
        fairseq_train(args)


def test_projection_head_queue_and_inner_layer(tiny, tmp_path):
    messages = fairseq_train(alignment_args(
        tiny, tmp_path, 6, "--seq-weight", "1", "--projection-dim", "16", "--queue-size", "24",
        "--source-layer", "1", "--pooling", "cls"))
    steps = [s for s in json_stats(messages, "\"seq_loss\"") if "train_loss" not in s]
    assert len(steps) == 6
    # <s> states of a fresh model are nearly identical, so the loss sits near chance, log(#candidates):
    # log(16) = 2.77 nats at the first update (empty queue), towards log(16 + 24) = 3.69 once the queue
    # holds 24 past vectors (without the queue it stays at 2.773 for these 6 updates).
    assert float(steps[0]["seq_loss"]) == pytest.approx(2.773, abs=0.05)
    assert all(float(s["seq_loss"]) > 3.2 for s in steps[2:])


def test_resumed_run_continues_the_pair_stream(tiny, tmp_path):
    def run(updates):
        args = alignment_args(tiny, tmp_path, updates, "--seq-weight", "0:0,2:1", "--save-interval-updates", "6")
        args.remove("--no-save")
        return fairseq_train(args)

    first = [s for s in json_stats(run(6), "\"lambda_seq\"") if "train_loss" not in s]
    drawn = sum(s.get("seq_loss") is not None for s in first)  # one pair batch per update with λ_seq > 0
    assert len(first) == 6 and drawn == 5  # λ_seq = 0 only at update 0
    messages = run(10)
    assert any("Loaded checkpoint" in m and "@ 6 updates" in m for m in messages)
    resumed = [m for m in messages if m.startswith("resumed at update")]
    assert resumed == [f"resumed at update 6: the pair stream continues at pair epoch 1, batch {drawn} ({drawn} "
                       "batches drawn before)"], resumed
