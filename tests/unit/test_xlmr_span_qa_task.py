"""Task and criterion `xlmr_span_qa`: settings errors, G-XLT files, batches, the loss, logged EM/F1."""

import json
import math

import pytest
import torch
from fairseq.logging import metrics

from fairseq_xlmr.criterions.xlmr_span_qa import XlmrSpanQaCriterion
from fairseq_xlmr.tasks.xlmr_span_qa import XlmrSpanQaConfig, XlmrSpanQaTask, language_pairs, split_files
from tests.fixtures.fairseq_run import USER_DIR, fairseq_train
from tests.fixtures.tiny_data import make_tiny_corpus, make_tiny_spm

CONTEXTS = {
    "en": ("The small cat sees the red house and the big dog runs under the green tree.", "the big dog"),
    "de": ("Die Katze sieht das Haus und der Hund läuft unter dem Baum mit dem Freund.", "der Hund"),
}


def write_squad(path, lang, copies=3):
    context, answer = CONTEXTS[lang]
    answers = [{"text": answer, "answer_start": context.index(answer)}]
    qas = [{"id": f"{lang}{i}", "question": "Who runs?", "answers": answers} for i in range(copies)]
    path.write_text(json.dumps({"version": "1.1", "data": [{"paragraphs": [{"context": context, "qas": qas}]}]}),
                    encoding="utf-8")


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa_task")
    corpus = make_tiny_corpus(root / "corpus", languages=("en", "de"), lines=150)
    tokenizer = make_tiny_spm(root / "model", corpus, vocab_size=120)
    data = root / "data"
    data.mkdir()
    write_squad(data / "train-v1.1.json", "en")
    for lang in ("en", "de"):
        write_squad(data / f"dev-context-{lang}-question-{lang}.json", lang)
    return root, data, tokenizer["spm"]


def config(data, spm_model="", **overrides):
    settings = dict(data=str(data), spm_model=str(spm_model), eval_languages="en,de", max_length=24, doc_stride=8,
                    max_query_length=8, seed=1, train_subset="train", valid_subset="valid", restore_file="",
                    finetune_from_model=None, best_checkpoint_metric="f1", maximize_best_checkpoint_metric=True)
    settings.update(overrides)
    return XlmrSpanQaConfig(**settings)


@pytest.mark.parametrize("overrides, message", [
    (dict(max_length=19), r"`task.max_length` 19 leaves 7 context pieces .* at least `task.doc_stride` \(8\)"),
    (dict(eval_languages="en,ru"), r"`task.eval_languages` 'ru' has no MLQA answer normalisation"),
    (dict(eval_languages="en,en"), r"`task.eval_languages` lists en more than once"),
    (dict(eval_languages="en,es"), r"lacks dev-context-es-question-es.json \(it has: dev-context-de-"),
    (dict(maximize_best_checkpoint_metric=False), r"--maximize-best-checkpoint-metric"),
    (dict(doc_stride=0), r"`task.doc_stride` must be at least 1, got 0"),
])
def test_bad_settings_fail_before_any_data_is_read(qa_dir, overrides, message):
    _, data, spm_model = qa_dir
    with pytest.raises(ValueError, match=message):
        XlmrSpanQaTask.setup_task(config(data, spm_model, **overrides))


def test_tokenizer_comes_from_beside_the_restore_file(qa_dir, tmp_path):
    _, data, spm_model = qa_dir
    with pytest.raises(ValueError, match=r"`task.spm_model` is empty and there is no pretrained checkpoint .* "
                                         r"--restore-file 'checkpoint_last.pt' is not a file"):
        XlmrSpanQaTask.setup_task(config(data, restore_file="checkpoint_last.pt"))
    checkpoint = spm_model.parent / "model.pt"
    checkpoint.write_bytes(b"")  # only its directory matters here
    task = XlmrSpanQaTask.setup_task(config(data, restore_file=str(checkpoint)))
    assert task.dictionary[len(task.dictionary) - 1] == "<mask>"  # rows match the pretrained embeddings
    assert len(XlmrSpanQaTask.setup_task(config(data, finetune_from_model=str(checkpoint))).dictionary) == len(
        task.dictionary)
    squad_only = config(data, spm_model, eval_languages="ru", qa_metric="squad",
                        valid_file="dev-context-en-question-en.json")
    assert [p.name for p in XlmrSpanQaTask.setup_task(squad_only).pairs] == ["ru"]  # any language with `squad`


def test_gxlt_pairs_read_one_file_per_context_question_pair(qa_dir):
    _, data, spm_model = qa_dir
    pairs = language_pairs(config(data, eval_languages="de", question_languages="en,de"))
    assert [p.name for p in pairs] == ["de-en", "de"]
    cfg = config(data, eval_languages="de", question_languages="en,de")
    assert [path.rsplit("/", 1)[1] for _, path in split_files(cfg, pairs, "valid")] == [
        "dev-context-de-question-en.json", "dev-context-de-question-de.json"]
    assert split_files(cfg, pairs, "test")[0][1].endswith("test-context-de-question-en.json")


@pytest.fixture(scope="module")
def task(qa_dir):
    _, data, spm_model = qa_dir
    task = XlmrSpanQaTask.setup_task(config(data, spm_model))
    task.load_dataset("valid")
    return task


def peaked_logits(batch, positions):
    """(batch, seq_len, 2) logits with 10 at the given (start, end) positions, -inf at padding."""
    logits = torch.zeros(*batch["net_input"]["src_tokens"].shape, 2)
    for row, (start, end) in enumerate(positions):
        logits[row, start, 0] = logits[row, end, 1] = 10.0
    return logits.masked_fill(batch["net_input"]["src_tokens"].eq(1)[:, :, None], float("-inf"))


def test_batches_hold_windows_whose_targets_point_at_the_answer(task):
    dataset = task.dataset("valid")
    batch = dataset.collater(list(dataset.ordered_indices()))
    tokens, target = batch["net_input"]["src_tokens"], batch["target"]
    assert batch["split"] == "valid" and target.shape == (len(dataset), 2) and tokens.size(1) <= 24
    assert (tokens[:, 0] == task.dictionary.bos()).all()
    for row, index in enumerate(batch["id"].tolist()):
        window = dataset.windows[index]
        if window.start:  # the answer's pieces, read back from the window, are the answer
            pieces = [task.dictionary[i] for i in tokens[row, window.start:window.end + 1].tolist()]
            context, answer = CONTEXTS["en" if window.example_index < 3 else "de"]
            assert "".join(pieces).replace("\u2581", " ").strip() == answer
    assert (target[:, 0] == 0).any() and (target[:, 0] > 0).any()  # long contexts: some windows lack the answer


def test_criterion_is_the_mean_of_start_and_end_cross_entropy(task):
    criterion = XlmrSpanQaCriterion(task)
    dataset = task.dataset("valid")
    batch = dataset.collater([0, 1])
    logits = torch.randn(*batch["net_input"]["src_tokens"].shape, 2)
    loss, sample_size, log = criterion.span_loss(logits, batch)
    expected = sum(
        (-torch.log_softmax(logits[r, :, 0], 0)[s] - torch.log_softmax(logits[r, :, 1], 0)[e]) / 2
        for r, (s, e) in enumerate(batch["target"].tolist())
    )
    assert sample_size == 2 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with metrics.aggregate(new_root=True) as agg:
        XlmrSpanQaCriterion.reduce_metrics([log])
        assert agg.get_smoothed_values()["loss"] == pytest.approx(expected.item() / 2 / math.log(2), abs=1e-3)


def _validate(task, dataset, positions_of):
    """Run decode + reduce_metrics over single-window batches (answers span batches), as fairseq's validate."""
    with metrics.aggregate(new_root=True) as agg:
        for index in dataset.ordered_indices():
            batch = dataset.collater([int(index)])
            window = dataset.windows[int(index)]
            log = {"loss": 0.0, "sample_size": 1, "ntokens": 1, "nsentences": 1,
                   "_qa_spans": task.decode_batch(batch, peaked_logits(batch, [positions_of(window)]))}
            task.reduce_metrics([log], XlmrSpanQaCriterion(task))
        return agg.get_smoothed_values()


def test_logged_f1_per_language_and_average(task):
    dataset = task.dataset("valid")
    stats = _validate(task, dataset, lambda w: (w.start, w.end))  # every window predicts its target
    assert (stats["f1_en"], stats["f1_de"], stats["f1"], stats["em"]) == (100.0, 100.0, 100.0, 100.0)
    assert "_qa_spans" not in stats

    # Predict only the answer's last piece: en "dog" vs "the big dog" -> [dog] vs [big, dog]: F1 2/3, EM 0;
    # de "Hund" vs "der Hund": MLQA drops the article, so EM and F1 are 1.
    stats = _validate(task, dataset, lambda w: (w.end, w.end))
    assert (stats["f1_en"], stats["em_en"], stats["f1_de"], stats["em_de"]) == (66.67, 0.0, 100.0, 100.0)
    assert (stats["f1"], stats["em"]) == (83.33, 50.0)

    # Predict each window's first context piece: every window then scores 20 and whichever wins, its first
    # piece ("T" of "The", "house", "der", "Baum", ...) is no answer word: F1 and EM 0.
    stats = _validate(task, dataset, lambda w: (w.context_start, w.context_start))
    assert (stats["f1_en"], stats["f1_de"], stats["em"]) == (0.0, 0.0, 0.0)


def test_malformed_training_file_fails_before_training(qa_dir, tmp_path):
    _, data, spm_model = qa_dir
    bad = tmp_path / "data"
    bad.mkdir()
    for path in data.iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    squad = json.loads((bad / "train-v1.1.json").read_text())
    squad["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] += 1
    (bad / "train-v1.1.json").write_text(json.dumps(squad))
    with pytest.raises(ValueError, match=r"qas\[1\] \(id en1\): answers\[0\].answer_start = 38 does not point"):
        fairseq_train([bad, "--user-dir", USER_DIR, "--task", "xlmr_span_qa", "--criterion", "xlmr_span_qa",
                       "--arch", "xlmr_debug", "--spm-model", spm_model, "--eval-languages", "en,de",
                       "--max-length", "24", "--doc-stride", "8", "--max-query-length", "8", "--cpu",
                       "--batch-size", "4", "--max-update", "1", "--save-dir", tmp_path / "ck",
                       "--optimizer", "adam", "--lr", "1e-4"])
