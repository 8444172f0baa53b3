"""Parallel data for TLM and contrastive alignment: `xlmr binarize --para-dir` keeps pairs aligned,
pairs are α-sampled, TLM inputs carry per-token languages and (optionally) restarted positions,
and dictionary positives reach the batch."""

import numpy as np
import pytest
import sentencepiece as spm
from fairseq.data import Dictionary, data_utils

from fairseq_xlmr import cli
from fairseq_xlmr.data.language_sampling import sampling_probs, size_ratios
from fairseq_xlmr.data.language_sampling_dataset import LanguageSamplingDataset
from fairseq_xlmr.data.parallel import BitextDataset, ParallelBatchDataset, tlm_pair
from fairseq_xlmr.data.word_pairs import read_lexicon
from fairseq_xlmr.preprocess.binarize_parallel import binarize_parallel
from tests.fixtures.tiny_parallel import DE, EN, make_parallel_data_bin


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_parallel_data_bin(tmp_path_factory.mktemp("para"), pairs=120, valid=10)


def load_side(tiny, split, lang, dictionary):
    return data_utils.load_indexed_dataset(str(tiny["para"] / "en-de" / f"{split}.{lang}"), dictionary)


def test_binarized_pairs_stay_aligned(tiny):
    dictionary = Dictionary.load(str(tiny["dict"]))
    sp = spm.SentencePieceProcessor(model_file=str(tiny["spm"]))
    en_lines = (tiny["root"] / "para" / "en-de.en").read_text(encoding="utf-8").splitlines()
    de_lines = (tiny["root"] / "para" / "en-de.de").read_text(encoding="utf-8").splitlines()
    translation = dict(zip(en_lines, de_lines))
    seen = 0
    for split, expected in (("train", 110), ("valid", 10)):
        en, de = load_side(tiny, split, "en", dictionary), load_side(tiny, split, "de", dictionary)
        assert len(en) == len(de) == expected
        for i in range(len(en)):
            en_text = sp.decode_pieces([dictionary[t] for t in en[i][:-1].tolist()])
            de_text = sp.decode_pieces([dictionary[t] for t in de[i][:-1].tolist()])
            assert translation[en_text] == de_text  # item i of both sides is one pair
            seen += 1
    assert seen == 120


def test_empty_side_drops_the_whole_pair(tmp_path, tiny):
    para = tmp_path / "para"
    para.mkdir()
    (para / "en-de.en").write_text("cat dog\n\nriver\nbook city\n", encoding="utf-8")
    (para / "en-de.de").write_text("Katze Hund\nHaus\n\nBuch Stadt\n", encoding="utf-8")
    summary = binarize_parallel(para, tiny["spm"], tmp_path / "bin", quiet=True)
    assert summary["en-de"]["dropped"] == 2 and summary["en-de"]["train"] == 2
    dictionary = Dictionary.load(str(tiny["dict"]))
    de = data_utils.load_indexed_dataset(str(tmp_path / "bin" / "en-de" / "train.de"), dictionary)
    assert "".join(dictionary[t] for t in de[1][:-1].tolist()).replace("\u2581", " ").strip() == "Buch Stadt"


def test_misaligned_files_are_rejected_before_work(tmp_path, tiny):
    para = tmp_path / "para"
    para.mkdir()
    (para / "en-de.en").write_text("a\nb\nc\n", encoding="utf-8")
    (para / "en-de.de").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not aligned.*3 lines.*2"):
        cli.run(["binarize", "--para-dir", str(para), "--spm-model", str(tiny["spm"]), "--dest-dir", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_tlm_pair_languages_and_positions():
    tokens, langs, positions = tlm_pair(np.array([10, 11, 2]), np.array([20, 2]), 0, 2, 3, 7, pad=1,
                                        restart_positions=True)
    assert tokens.tolist() == [0, 10, 11, 2, 2, 20, 2]  # <s> A </s></s> B </s>
    assert langs.tolist() == [3, 3, 3, 3, 7, 7, 7]
    assert positions.tolist() == [2, 3, 4, 5, 2, 3, 4]  # restart: the second segment counts from 0 again
    _, _, running = tlm_pair(np.array([10, 11, 2]), np.array([20, 2]), 0, 2, 3, 7, pad=1, restart_positions=False)
    assert running.tolist() == [2, 3, 4, 5, 6, 7, 8]


def test_pair_batches_carry_mask_languages_and_dictionary_positives(tiny):
    dictionary = Dictionary.load(str(tiny["dict"]))
    mask_idx = dictionary.add_symbol("<mask>")
    lexicon = read_lexicon(tiny["lexicons"] / "en-de.txt")
    bitext = BitextDataset(load_side(tiny, "train", "en", dictionary), load_side(tiny, "train", "de", dictionary),
                           dictionary, pair_id=0, src_lang=4, tgt_lang=9, max_side=128, lexicon=lexicon)
    sampled = LanguageSamplingDataset([bitext], [1.0], seed=1)
    batches = ParallelBatchDataset(sampled, dictionary, mask_idx, 1, 0.3, 0.1, 0.1, restart_positions=True)
    batch = batches.collater([batches[i] for i in range(8)])
    assert batch["src_tokens"].shape[0] == 8 and (batch["src_tokens"][:, 0] == dictionary.bos()).all()
    predicted = batch["tlm_target"].ne(dictionary.pad())
    assert predicted.any() and (batch["tlm_tokens"][predicted] == mask_idx).any()
    # Per-token language ids: 4 up to the first </s>, 9 after it.
    row = batch["tlm_tokens"][0]
    boundary = int((row == dictionary.eos()).nonzero()[0]) + 1
    assert set(batch["tlm_lang"][0, :boundary].tolist()) == {4} and batch["tlm_lang"][0, boundary] == 9
    assert batch["tlm_positions"][0, boundary].item() == dictionary.pad() + 1  # restarted
    # Word-for-word translations: every English word has its German twin as a positive, in order.
    for b in range(8):
        item = batches[b]
        num_words = int(item["src_word"].max()) + 1
        assert batch["positives"][b].sum() >= num_words
        for i in range(num_words):
            assert batch["positives"][b, i, i]


def test_pairs_are_sampled_with_alpha():
    counts = [900, 100]
    ratios = size_ratios(counts, sampling_probs(counts, 0.3))

    class Sized:
        def __init__(self, n):
            self.sizes = np.full(n, 5)

        def __len__(self):
            return len(self.sizes)

        def set_epoch(self, epoch):
            pass

    drawn = LanguageSamplingDataset([Sized(900), Sized(100)], ratios, seed=1).counts_per_language()
    q_small = 0.1 ** 0.3 / (0.1 ** 0.3 + 0.9 ** 0.3)
    assert drawn[1] / drawn.sum() == pytest.approx(q_small, abs=0.002)  # ≈ 0.34, not the natural 0.1
    assert EN[0] == "cat" and DE[0] == "Katze"


def test_model_takes_tlm_positions_and_per_token_languages():
    import torch

    from tests.unit.test_xlmr_encoder import build

    torch.manual_seed(0)
    model = build("xlmr_debug", language_embeddings=True).eval()
    tokens, langs, running = (torch.from_numpy(x)[None] for x in tlm_pair(
        np.array([10, 11, 12, 2]), np.array([20, 21, 2]), 0, 2, 1, 2, pad=1, restart_positions=False))
    _, _, restarted = tlm_pair(np.array([10, 11, 12, 2]), np.array([20, 21, 2]), 0, 2, 1, 2, pad=1,
                               restart_positions=True)
    base, _ = model(tokens, features_only=True, lang_id=langs)
    # Explicit running positions are exactly the model's own; restarted ones change only segment 2.
    same, _ = model(tokens, features_only=True, lang_id=langs, positions=running)
    assert torch.allclose(base, same, atol=1e-6)
    moved, _ = model(tokens, features_only=True, lang_id=langs, positions=torch.from_numpy(restarted)[None])
    assert not torch.allclose(base, moved, atol=1e-4)
    # Per-token language ids equal to one id per sequence give the same output as that id.
    per_sequence, _ = model(tokens, features_only=True, lang_id=torch.tensor([1]))
    per_token, _ = model(tokens, features_only=True, lang_id=torch.ones_like(tokens))
    assert torch.allclose(per_sequence, per_token, atol=1e-6)
    assert not torch.allclose(per_token, base, atol=1e-4)  # segment 2 is language 2 in `langs`


def _alignment_task(tiny, **overrides):
    from fairseq_xlmr.tasks.xlmr_alignment import XlmrAlignmentConfig, XlmrAlignmentTask

    settings = dict(data=str(tiny["data"]), para_data=str(tiny["para"]), seed=1, train_subset="train",
                    tokens_per_sample=32, max_side_tokens=16, para_batch_size=16, update_freq=[1])
    settings.update(overrides)
    task = XlmrAlignmentTask.setup_task(XlmrAlignmentConfig(**settings))
    task.load_dataset("train")
    return task


def _ids(batch):
    """What identifies a batch of pairs (its items carry no ids): its English sides, row by row."""
    return tuple(map(tuple, batch["src_tokens"].tolist()))


@pytest.mark.parametrize("update_freq, needs", [(1, lambda u: True), (2, lambda u: u >= 3)])
def test_resumed_pair_stream_continues_where_the_run_stopped(tiny, update_freq, needs):
    import torch

    cpu = torch.device("cpu")
    # 120 pairs in batches of 16: 8 batches per pair epoch, so 30 updates cross several epochs.
    full = _alignment_task(tiny, update_freq=[update_freq])
    stream = [_ids(full.next_parallel_batch(cpu)) for u in range(30) if needs(u) for _ in range(update_freq)]
    for stop in (5, 8, 17):
        resumed = _alignment_task(tiny, update_freq=[update_freq])
        skipped = resumed.resume_pair_stream(stop, needs)
        assert skipped == update_freq * sum(needs(u) for u in range(stop))
        rest = [_ids(resumed.next_parallel_batch(cpu)) for _ in range(len(stream) - skipped)]
        assert rest == stream[skipped:], stop
    # 110 training pairs make 7 batches per pair epoch, reshuffled every epoch: the stream is not periodic,
    # so a resume at the wrong place could not pass the comparison above.
    assert stream[:7] != stream[7:14] and stream[7:14] != stream[14:21]
