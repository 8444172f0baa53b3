"""Real `fairseq-train` fine-tuning runs (in-process) of a tiny pretrained XLM-R on learnable synthetic
sentence classification, NER and POS sets in the real file formats, then `xlmr finetune-eval` /
`finetune-seeds` on the checkpoints.

The pretrained model comes from a few masked_lm updates on a tiny en/de corpus. Sentence label: does
the sentence contain "cat" ("Katze")? NER: places/people of a closed word list, an adjective before a
place opens the entity. POS: UPOS by word class.
"""

import logging

import pytest

from fairseq_xlmr.evaluation.finetune_eval import evaluate_and_write
from fairseq_xlmr.evaluation.results import read_results
from fairseq_xlmr.experiments.seeds import pretrained_model_args, run_seeds
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, json_stats
from tests.fixtures.tiny_finetune import (
    LANGUAGES,
    MODEL,
    pretrained_model_dir,
    write_conll,
    write_conllu,
    write_keyword_tsv,
)

TRAINING = [
    "--cpu", "--num-workers", "0", "--seed", "1", "--dropout", "0", "--attention-dropout", "0",
    "--optimizer", "adam", "--lr", "1e-3", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "10",
    "--batch-size", "16", "--log-interval", "10", "--no-epoch-checkpoints",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return pretrained_model_dir(tmp_path_factory.mktemp("pretrained"))


def keyword_data(root, train=200, dev=60):
    for offset, lang in enumerate(LANGUAGES):
        write_keyword_tsv(root / lang / "train.tsv", lang, train, seed=10 + offset)
        write_keyword_tsv(root / lang / "dev.tsv", lang, dev, seed=20 + offset)
        write_keyword_tsv(root / lang / "test.tsv", lang, dev, seed=30 + offset)
    return root


def finetune(task, data, model_dir, save_dir, metric, *extra):
    return fairseq_train([
        data, "--user-dir", USER_DIR, "--task", task, "--criterion", task, *MODEL,
        "--finetune-from-model", model_dir / "model.pt", "--save-dir", save_dir, *TRAINING,
        "--best-checkpoint-metric", metric, "--maximize-best-checkpoint-metric", *extra,
    ])


def valid_stats(messages):
    return json_stats(messages, key='"valid_loss"')


def _float(stats, key):
    return float(stats[key])


def test_sentence_classification_learns_every_language_and_evaluates_from_the_checkpoint(model_dir, tmp_path):
    data = keyword_data(tmp_path / "data")
    messages = finetune("xlmr_sentence_classification", data, model_dir, tmp_path / "ckpt", "accuracy",
                        "--train-languages", "all", "--text-b-column", "", "--max-length", "64", "--max-epoch", "2")
    valid = valid_stats(messages)
    assert len(valid) == 2
    last = valid[-1]
    assert {"valid_accuracy_en", "valid_accuracy_de", "valid_accuracy"} <= set(last)
    assert _float(last, "valid_accuracy") == pytest.approx(
        (_float(last, "valid_accuracy_en") + _float(last, "valid_accuracy_de")) / 2, abs=0.01)
    assert _float(last, "valid_accuracy_en") >= 85 and _float(last, "valid_accuracy_de") >= 85, last
    assert float(last["valid_bsz"]) * 8 == pytest.approx(120)  # 120 dev sentences in 8 batches: none dropped
    best = max(_float(s, "valid_accuracy") for s in valid)

    # Evaluation needs neither the training files (labels are in the checkpoint) nor the run's state.
    for lang in LANGUAGES:
        (data / lang / "train.tsv").unlink()
    results = read_results(evaluate_and_write(tmp_path / "ckpt" / "checkpoint_best.pt", "keyword", cpu=True))
    assert results["split"] == "test" and results["metric"] == "accuracy" and results["seed"] == 1
    assert results["train_languages"] == ["de", "en"] and set(results["per_language"]) == {"de", "en"}
    assert min(results["per_language"].values()) >= 85, results
    assert results["dev"]["average"] == pytest.approx(best, abs=0.01)  # the model selected on the dev average


def test_max_length_and_positions_are_checked_before_training(model_dir, tmp_path):
    data = keyword_data(tmp_path / "data", train=20, dev=10)
    common = ["--text-b-column", "", "--max-epoch", "1"]
    with pytest.raises(ValueError, match=r"`task.max_length` must not exceed the model's max_positions, got 128 > 64"):
        finetune("xlmr_sentence_classification", data, model_dir, tmp_path / "a", "accuracy", *common)
    with pytest.raises(ValueError, match=r"built with max_positions=128, but the pretrained model .* has max_positions=64; .*--max-positions 64"):
        finetune("xlmr_sentence_classification", data, model_dir, tmp_path / "b", "accuracy", *common,
                 "--max-positions", "128")  # (later on the command line, it wins over MODEL's 64)
    assert not (tmp_path / "a" / "checkpoint_last.pt").exists()


def test_sizes_are_read_from_the_pretrained_checkpoint(model_dir):
    assert pretrained_model_args(model_dir / "model.pt") == [
        "--encoder-layers", "2", "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
        "--encoder-attention-heads", "4", "--max-positions", "64", "--layer-norm-eps", "1e-05",
        "--sentence-pooling", "cls"]


def test_ner_entity_f1_with_sliding_windows(model_dir, tmp_path):
    data = tmp_path / "conll"
    for offset, lang in enumerate(LANGUAGES):
        write_conll(data / lang / "train.txt", lang, 300, seed=10 + offset)
        # Latin-1 dev files, as CoNLL-2002's es/nl: the reader detects the encoding.
        write_conll(data / lang / "dev.txt", lang, 60, seed=20 + offset, min_words=10, max_words=30,
                    encoding="latin-1")
    messages = finetune("xlmr_token_classification", data, model_dir, tmp_path / "ckpt", "f1",
                        "--train-languages", "all", "--train-file", "{lang}/train.txt", "--valid-file",
                        "{lang}/dev.txt", "--test-file", "", "--max-length", "16", "--window-stride", "6",
                        "--max-epoch", "3")
    assert any("sentences exceed 16 tokens and are split into windows" in m for m in messages)
    last = valid_stats(messages)[-1]
    assert {"valid_f1_en", "valid_f1_de", "valid_f1", "valid_accuracy_en"} <= set(last)
    assert _float(last, "valid_f1") >= 80 and min(_float(last, "valid_f1_en"), _float(last, "valid_f1_de")) >= 75, last


def test_zero_shot_transfer_trains_on_english_and_reports_every_eval_language(model_dir, tmp_path):
    data = keyword_data(tmp_path / "data")
    messages = finetune("xlmr_sentence_classification", data, model_dir, tmp_path / "ckpt", "accuracy",
                        "--train-languages", "en", "--eval-languages", "en,de", "--text-b-column", "",
                        "--max-length", "64", "--max-epoch", "4")
    train = json_stats(messages, key='"train_loss"')[-1]
    assert "train_accuracy_en" in train and "train_accuracy_de" not in train  # no German training data
    last = valid_stats(messages)[-1]
    assert _float(last, "valid_accuracy_en") >= 85, last
    assert "valid_accuracy_de" in last  # zero-shot: measured, however low a tiny model's transfer is


def test_pos_accuracy_on_conllu(model_dir, tmp_path):
    data = tmp_path / "ud"
    for offset, lang in enumerate(LANGUAGES):
        write_conllu(data / lang / "train.conllu", lang, 200, seed=10 + offset)
        write_conllu(data / lang / "dev.conllu", lang, 40, seed=20 + offset)
    messages = finetune("xlmr_token_classification", data, model_dir, tmp_path / "ckpt", "accuracy",
                        "--data-format", "conllu", "--metric", "accuracy", "--train-languages", "all",
                        "--train-file", "{lang}/train.conllu", "--valid-file", "{lang}/dev.conllu", "--test-file", "",
                        "--max-length", "64", "--max-epoch", "2")
    last = valid_stats(messages)[-1]
    assert "valid_f1" not in last
    assert _float(last, "valid_accuracy_en") >= 90 and _float(last, "valid_accuracy_de") >= 90, last
    with pytest.raises(ValueError, match=r"--center moves sentence vectors.*xlmr_token_classification checkpoint"):
        evaluate_and_write(tmp_path / "ckpt" / "checkpoint_best.pt", "pos", out=tmp_path / "c.json", cpu=True,
                           center=True)
    assert not (tmp_path / "c.json").exists()


@pytest.mark.slow
def test_finetune_seeds_writes_results_per_seed_and_mean_std(model_dir, tmp_path, caplog):
    data = keyword_data(tmp_path / "data", train=150, dev=30)
    train_args = [data, "--task", "xlmr_sentence_classification", "--criterion", "xlmr_sentence_classification",
                  *MODEL, "--finetune-from-model", model_dir / "model.pt",
                  *[a for a in TRAINING if a not in ("--seed", "1")], "--train-languages", "all",
                  "--text-b-column", "", "--max-length", "64", "--lr-scheduler", "polynomial_decay",
                  "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric"]
    trained = []

    def train(argv):
        trained.append(argv[argv.index("--seed") + 1])
        fairseq_train(argv)

    caplog.set_level(logging.INFO, logger="fairseq_xlmr.experiments.seeds")
    summary = run_seeds("keyword", [1, 2], tmp_path / "runs", train_args, cpu=True, epochs=4, train=train)
    assert trained == ["1", "2"]
    assert any("300 training examples, 16 per update: 4 epochs = 76 updates" in m for m in caplog.messages)
    for seed in (1, 2):
        assert read_results(tmp_path / "runs" / f"seed{seed}")["seed"] == seed
    assert summary["seeds"] == [1, 2] and summary["per_language"]["de"]["n"] == 2
    assert summary["average"]["mean"] >= 80 and summary["average"]["std"] >= 0
    assert (tmp_path / "runs" / "summary.json").is_file()
    # Done seeds are not run again.
    assert run_seeds("keyword", [1, 2], tmp_path / "runs", train_args, cpu=True, epochs=4, train=train) == summary
    assert trained == ["1", "2"]


def test_freeze_embeddings_keeps_the_pretrained_tables_and_trains_the_rest(model_dir, tmp_path):
    import torch

    data = keyword_data(tmp_path / "data", train=64, dev=16)
    finetune("xlmr_sentence_classification", data, model_dir, tmp_path / "ckpt", "accuracy", "--text-b-column", "",
             "--max-length", "64", "--max-update", "4", "--freeze-embeddings")
    before = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=False)["model"]
    after = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    prefix = "encoder.sentence_encoder."
    for name in ("embed_tokens.weight", "embed_positions.weight"):
        assert torch.equal(before[prefix + name], after[prefix + name]), name
    layer = prefix + "layers.0.fc1.weight"
    assert not torch.allclose(before[layer], after[layer])  # the layers did train


def test_freeze_layers_trains_only_what_is_above_them(model_dir, tmp_path):
    import torch

    data = keyword_data(tmp_path / "data", train=64, dev=16)
    before = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=False)["model"]
    prefix = "encoder.sentence_encoder."
    layers = 1 + max(int(k[len(prefix) + 7:].split(".")[0]) for k in before if k.startswith(prefix + "layers."))

    def trained(frozen: int):
        finetune("xlmr_sentence_classification", data, model_dir, tmp_path / f"ckpt{frozen}", "accuracy",
                 "--text-b-column", "", "--max-length", "64", "--max-update", "4", "--freeze-layers", str(frozen))
        after = torch.load(tmp_path / f"ckpt{frozen}" / "checkpoint_last.pt", map_location="cpu",
                           weights_only=False)["model"]
        return {k for k in before if k in after and not torch.equal(before[k], after[k])}

    changed = trained(1)  # embeddings and layer 0 fixed, the layers above and the head trained
    assert not any(k.startswith((prefix + "embed_", prefix + "layernorm_embedding", prefix + "layers.0."))
                   for k in changed), changed
    assert any(k.startswith(prefix + "layers.1.") for k in changed)
    assert not any(k.startswith(prefix) for k in trained(layers))  # the whole encoder: a probe
    with pytest.raises(ValueError, match=rf"`--freeze-layers` must be in \[0, {layers}\].*got {layers + 1}"):
        trained(layers + 1)


def test_mean_pooling_head_reads_the_mean_of_real_tokens_and_survives_the_checkpoint(model_dir, tmp_path):
    import torch
    from fairseq import checkpoint_utils

    from fairseq_xlmr.modules.pooling import pool_sequence

    data = keyword_data(tmp_path / "data", train=64, dev=16)
    finetune("xlmr_sentence_classification", data, model_dir, tmp_path / "ckpt", "accuracy", "--text-b-column", "",
             "--max-length", "64", "--max-update", "4", "--freeze-layers", "2", "--pooling", "mean")
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "ckpt" / "checkpoint_last.pt")])
    assert cfg.task.pooling == "mean"  # finetune-eval rebuilds the criterion from the checkpoint's task
    model, criterion = models[0].eval(), task.build_criterion(cfg.criterion)
    pad = task.source_dictionary.pad()
    short, long = torch.tensor([0, 10, 11, 2]), torch.tensor([0, 10, 11, 12, 13, 14, 2])
    batch = torch.full((2, len(long)), pad)
    batch[0, :len(short)], batch[1] = short, long
    with torch.no_grad():
        logits = criterion.sentence_logits(model, {"src_tokens": batch})
        alone = criterion.sentence_logits(model, {"src_tokens": short[None]})
        states, _ = model(short[None], features_only=True)
        head = model.classification_heads[task.cfg.classification_head_name]
        by_hand = head(pool_sequence(states, short[None].ne(pad), "mean")[:, None])
        cls_logits, _ = model(short[None], features_only=True, classification_head_name=task.cfg.classification_head_name)
    assert torch.allclose(logits[:1], alone, atol=1e-5)  # padding does not enter the mean
    assert torch.allclose(alone, by_hand, atol=1e-6)
    assert not torch.allclose(alone, cls_logits, atol=1e-3)  # and it is not the <s> head


def test_center_moves_each_language_mean_onto_the_training_mean_before_the_head(model_dir, tmp_path):
    import torch
    from fairseq import checkpoint_utils

    data = keyword_data(tmp_path / "data", train=64, dev=16)
    finetune("xlmr_sentence_classification", data, model_dir, tmp_path / "ckpt", "accuracy", "--text-b-column", "",
             "--max-length", "64", "--max-update", "4", "--freeze-layers", "2", "--pooling", "mean",
             "--train-languages", "en", "--eval-languages", "all")
    checkpoint = tmp_path / "ckpt" / "checkpoint_last.pt"
    raw = read_results(evaluate_and_write(checkpoint, "keyword", out=tmp_path / "raw.json", cpu=True))
    centred = read_results(evaluate_and_write(checkpoint, "keyword", out=tmp_path / "centred.json", cpu=True,
                                              center=True))
    assert centred["centred"] is True and "centred" not in raw

    # By hand, one sentence at a time: head(v - mean of v over the language's test sentences + mean over train).
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    model, criterion = models[0].eval(), task.build_criterion(cfg.criterion)
    head = model.classification_heads[task.cfg.classification_head_name]

    def vectors(split):
        task.load_dataset(split)
        dataset = task.dataset(split)
        items = [dataset[i] for i in range(len(dataset))]
        with torch.no_grad():
            v = torch.cat([criterion.sentence_vectors(model, {"src_tokens": item["net_input.src_tokens"][None]})
                           for item in items])
        return v, torch.tensor([item["target"] for item in items]), torch.tensor([item["language"] for item in items])

    train_v, _, _ = vectors("train")
    test_v, target, language = vectors("test")
    moved_any = False
    for i, lang in enumerate(task.languages):
        rows = language.eq(i)
        v = test_v[rows]
        with torch.no_grad():
            plain = head(v[:, None])
            shifted = head((v - v.mean(0) + train_v.mean(0))[:, None])
        moved_any |= not torch.allclose(plain, shifted, atol=1e-4)
        for logits, results in ((plain, raw), (shifted, centred)):
            accuracy = 100 * logits.argmax(-1).eq(target[rows]).float().mean().item()
            assert results["per_language"][lang] == pytest.approx(accuracy, abs=0.01), (lang, results)
    assert moved_any

    # Centring needs the training files, and says so before writing anything.
    (data / "en" / "train.tsv").unlink()
    with pytest.raises(ValueError, match=r"train file missing: `task.train_file`"):
        evaluate_and_write(checkpoint, "keyword", out=tmp_path / "none.json", cpu=True, center=True)
    assert not (tmp_path / "none.json").exists()
