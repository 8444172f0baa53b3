"""`xlmr eval-mlm --mask-seed`: checkpoints trained with different seeds scored on the same masks."""

import json

import pytest
import torch

from fairseq_xlmr import checkpoint
from fairseq_xlmr.cli import main as xlmr
from fairseq_xlmr.evaluation.mlm_eval import evaluate
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, tiny_model_args
from tests.fixtures.tiny_bin import make_tiny_data_bin


@pytest.fixture(scope="module")
def seed2_run(tmp_path_factory):
    """A 5-update xlmr_mlm run with --seed 2 and the same checkpoint relabelled as a seed-1 run."""
    root = tmp_path_factory.mktemp("mask_seed")
    data = root / "data-bin"
    make_tiny_data_bin(data, ["en", "sw"], {"en": 120, "sw": 60}, valid_sentences=40)
    args = tiny_model_args()
    i = args.index("--seed")
    del args[i:i + 2]  # seed 2 instead
    fairseq_train([data, "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm", *args,
                   "--seed", "2", "--required-batch-size-multiple", "1", "--max-update", "5",
                   "--save-dir", root / "checkpoints"])
    trained = root / "checkpoints" / "checkpoint_last.pt"
    state = checkpoint.load(str(trained))
    assert state["cfg"]["common"]["seed"] == 2 and state["cfg"]["task"]["seed"] == 2
    # The same weights, as if the run had used seed 1: eval-mlm's default then masks with seed 1.
    state["cfg"]["common"]["seed"] = state["cfg"]["task"]["seed"] = 1
    relabelled = root / "relabelled_seed1.pt"
    torch.save(state, relabelled)
    return str(trained), str(relabelled)


def test_mask_seed_fixes_the_masks_whatever_seed_trained_the_model(seed2_run):
    trained, relabelled = seed2_run
    own = evaluate(trained)
    assert own["mask_seed"] == 2 and own == evaluate(trained, mask_seed=2)

    seed1 = evaluate(trained, mask_seed=1)
    assert seed1["mask_seed"] == 1
    assert seed1 == evaluate(trained, mask_seed=1)  # deterministic: the same numbers twice
    # What the seed-1 masks give: the default scoring of a seed-1 run with these weights.
    from_seed1_run = evaluate(relabelled)
    assert from_seed1_run["mask_seed"] == 1 and from_seed1_run["trained"] == seed1["trained"]

    # Other masks, other numbers (loss and number of predicted tokens), so the option is not ignored.
    for lang in ("en", "sw"):
        assert seed1["trained"][lang]["loss"] != own["trained"][lang]["loss"]
        assert seed1["trained"][lang]["loss"] != evaluate(trained, mask_seed=3)["trained"][lang]["loss"]
    assert any(seed1["trained"][lang]["predicted"] != own["trained"][lang]["predicted"] for lang in ("en", "sw"))


def test_cli_writes_results_for_the_report_and_rejects_a_negative_seed(seed2_run, tmp_path, capsys):
    trained, _ = seed2_run
    assert xlmr(["eval-mlm", trained, "--mask-seed", "1", "--results-dir", str(tmp_path / "ppl")]) == 0
    results = json.loads((tmp_path / "ppl" / "results.json").read_text())
    expected = {lang: r["ppl"] for lang, r in evaluate(trained, mask_seed=1)["trained"].items()}
    assert results["task"] == "valid_ppl" and results["seed"] == 1 and results["metric"] == "ppl"
    assert results["per_language"] == pytest.approx(expected, rel=1e-12)
    assert results["average"] == pytest.approx(sum(expected.values()) / 2, rel=1e-12)
    assert f"mean valid ppl {results['average']:.2f} over 2 languages (masks of seed 1)" in capsys.readouterr().out

    with pytest.raises(ValueError, match="--mask-seed must be >= 0, got -1"):
        evaluate(trained, mask_seed=-1)


def test_start_scores_another_checkpoints_weights_on_the_same_masks(seed2_run, tmp_path):
    """--start: the weights a continued-pretraining run started from, under the run's task and masks."""
    trained, relabelled = seed2_run
    results = evaluate(trained, with_init=True, start=trained)
    assert results["start"] == results["trained"]  # the same weights, the same masks: the same numbers
    state = checkpoint.load(trained)
    state["model"] = {k: v * 0.5 if v.is_floating_point() else v for k, v in state["model"].items()}
    halved = tmp_path / "halved.pt"
    torch.save(state, halved)
    other = evaluate(trained, start=str(halved))
    assert other["trained"] == results["trained"]
    assert all(other["start"][lang]["loss"] != other["trained"][lang]["loss"] for lang in ("en", "sw"))
    assert all(other["start"][lang]["predicted"] == other["trained"][lang]["predicted"] for lang in ("en", "sw"))
