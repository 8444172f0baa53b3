"""`xlmr average`: exact averages of known tensors, identity on identical inputs, clear refusals."""

import pytest
import torch
from fairseq.data import Dictionary

from fairseq_xlmr import checkpoint, cli
from fairseq_xlmr.fusion.average import average_state_dicts, last_k_checkpoints, parse_weights

EMBED = "encoder.sentence_encoder.embed_tokens.weight"


def _write_dict(path, symbols):
    d = Dictionary()
    for s in symbols:
        d.add_symbol(s)
    d.save(str(path))
    return len(d)


def _checkpoint(path, embed, extra=None, dtype=torch.float32, data="", fingerprint=""):
    model = {EMBED: embed.to(dtype), "encoder.lm_head.bias": torch.arange(embed.shape[0], dtype=dtype),
             "encoder.sentence_encoder.version": torch.tensor([3])}
    model.update(extra or {})
    cfg = {"task": {"_name": "xlmr_mlm", "data": data},
           "model": {"_name": "xlmr_encoder", "dictionary_fingerprint": fingerprint}}
    torch.save({"model": model, "cfg": cfg, "last_optimizer_state": {"state": {}}, "extra_state": {}}, path)
    return path


def test_known_tensors_uniform_and_weighted():
    a = {"w": torch.tensor([1.0, 2.0, 3.0]), "step": torch.tensor([7])}
    b = {"w": torch.tensor([3.0, 6.0, 11.0]), "step": torch.tensor([7])}
    uniform = average_state_dicts([a, b], [0.5, 0.5], ["a", "b"])
    assert torch.equal(uniform["w"], torch.tensor([2.0, 4.0, 7.0]))
    assert torch.equal(uniform["step"], torch.tensor([7]))  # integer buffers are copied, not averaged
    weighted = average_state_dicts([a, b], parse_weights("3,1", 2), ["a", "b"])
    assert torch.equal(weighted["w"], torch.tensor([1.5, 3.0, 5.0]))  # 0.75·a + 0.25·b


def test_identical_checkpoints_come_back_bit_for_bit():
    torch.manual_seed(0)
    state = {"w32": torch.randn(5, 7), "w16": torch.randn(4).half(), "wbf": torch.randn(3).bfloat16()}
    for n in (2, 3):
        out = average_state_dicts([state] * n, [1.0 / n] * n, ["x"] * n)
        for key in state:
            assert out[key].dtype == state[key].dtype
            assert torch.equal(out[key], state[key]), key


def test_accumulates_in_float64():
    # Three fp16 values whose fp16 running sum would round: fp64 accumulation gives the exact mean.
    states = [{"w": torch.tensor([2048.0], dtype=torch.float16)},
              {"w": torch.tensor([1.0], dtype=torch.float16)},
              {"w": torch.tensor([1.0], dtype=torch.float16)}]
    out = average_state_dicts(states, [1.0, 1.0, 1.0], ["a", "b", "c"])  # a plain sum, to expose rounding
    assert out["w"].item() == 2050.0  # fp16 accumulation: 2048 + 1 rounds to 2048, twice


def test_mismatched_shape_names_the_key():
    a = {"x": torch.zeros(2), "y": torch.zeros(3)}
    b = {"x": torch.zeros(2), "y": torch.zeros(4)}
    with pytest.raises(ValueError, match=r"differ in shape at 'y': \(4,\) vs \(3,\)"):
        average_state_dicts([a, b], [0.5, 0.5], ["a.pt", "b.pt"])
    with pytest.raises(ValueError, match=r"only in a.pt: \['y'\]"):
        average_state_dicts([a, {"x": torch.zeros(2)}], [0.5, 0.5], ["a.pt", "b.pt"])


def test_weights_are_checked():
    assert parse_weights(None, 4) == [0.25] * 4
    with pytest.raises(ValueError, match="one per checkpoint"):
        parse_weights("1,2", 3)
    with pytest.raises(ValueError, match="positive sum"):
        parse_weights("0,0", 2)


def test_last_k_by_update_number(tmp_path):
    for name in ("checkpoint_1_500.pt", "checkpoint_1_1500.pt", "checkpoint_2_1000.pt", "checkpoint_last.pt",
                 "checkpoint3.pt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in last_k_checkpoints(tmp_path, 2)] == ["checkpoint_2_1000.pt", "checkpoint_1_1500.pt"]
    with pytest.raises(ValueError, match="holds 3 numbered checkpoints"):
        last_k_checkpoints(tmp_path, 4)


def test_cli_averages_files_and_copies_the_vocabulary(tmp_path, capsys):
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    run1.mkdir(), run2.mkdir()
    size = _write_dict(run1 / "dict.txt", ["a", "b", "c"])
    _write_dict(run2 / "dict.txt", ["a", "b", "c"])
    (run1 / "sentencepiece.bpe.model").write_bytes(b"spm")
    rows = size + 1  # + <mask>
    _checkpoint(run1 / "checkpoint_1_10.pt", torch.ones(rows, 4))
    _checkpoint(run2 / "checkpoint_1_10.pt", 3 * torch.ones(rows, 4))
    out = tmp_path / "avg" / "model.pt"
    cli.main(["average", str(run1 / "checkpoint_1_10.pt"), str(run2 / "checkpoint_1_10.pt"), "--weights", "1,3",
              "--out", str(out)])
    state = checkpoint.load(out)
    assert torch.equal(state["model"][EMBED], torch.full((rows, 4), 2.5))
    assert "last_optimizer_state" not in state
    assert state["extra_state"]["averaging_weights"] == [0.25, 0.75]
    assert (out.parent / "dict.txt").read_text() == (run1 / "dict.txt").read_text()
    assert (out.parent / "sentencepiece.bpe.model").read_bytes() == b"spm"
    assert "averaged 2 checkpoints" in capsys.readouterr().out


def test_cli_refuses_different_dictionaries(tmp_path):
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    run1.mkdir(), run2.mkdir()
    size = _write_dict(run1 / "dict.txt", ["a", "b", "c"])
    _write_dict(run2 / "dict.txt", ["a", "x", "c"])
    _checkpoint(run1 / "m.pt", torch.ones(size + 1, 4))
    _checkpoint(run2 / "m.pt", torch.ones(size + 1, 4))
    with pytest.raises(ValueError, match="different dictionaries .* first difference at id 5"):
        cli.run(["average", str(run1 / "m.pt"), str(run2 / "m.pt"), "--out", str(tmp_path / "o.pt")])
    _write_dict(tmp_path / "small.txt", ["a"])
    with pytest.raises(ValueError, match="does not belong to this checkpoint"):
        cli.run(["average", str(run1 / "m.pt"), str(run2 / "m.pt"), "--out", str(tmp_path / "o.pt"),
                  "--dict", str(tmp_path / "small.txt")])
    assert not (tmp_path / "o.pt").exists()


def test_cli_refuses_when_no_dictionary_is_found(tmp_path, monkeypatch):
    """A run's checkpoints averaged from another directory: its relative task.data no longer resolves."""
    run = tmp_path / "project"
    for sub in ("data-bin", "checkpoints"):
        (run / sub).mkdir(parents=True)
    size = _write_dict(run / "data-bin" / "dict.txt", ["a", "b", "c"])
    for name in ("checkpoint_1_10.pt", "checkpoint_1_20.pt"):
        _checkpoint(run / "checkpoints" / name, torch.ones(size + 1, 4), data="data-bin")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    argv = ["average", "--last-k", "2", "--save-dir", str(run / "checkpoints"), "--out", str(elsewhere / "avg.pt")]
    with pytest.raises(ValueError) as err:
        cli.run(argv)
    message = str(err.value)
    assert message.startswith(f"no dict.txt found for {run / 'checkpoints' / 'checkpoint_1_10.pt'} (looked at "
                              f"{run / 'checkpoints' / 'dict.txt'}, data-bin/dict.txt; a relative task.data is read "
                              f"from the current directory, {elsewhere})")
    assert "Pass --dict" in message and list(elsewhere.iterdir()) == []  # nothing written
    monkeypatch.chdir(run)  # where the run was trained: task.data resolves
    cli.main(argv)
    assert (elsewhere / "avg.pt").is_file() and (elsewhere / "dict.txt").is_file()


def test_cli_refuses_checkpoints_of_different_recorded_dictionaries(tmp_path):
    """Same shapes, same dict.txt at hand, but the runs recorded different vocabularies."""
    size = _write_dict(tmp_path / "dict.txt", ["a", "b", "c"])
    a = _checkpoint(tmp_path / "a.pt", torch.ones(size + 1, 4), fingerprint="0123456789abcdef")
    b = _checkpoint(tmp_path / "b.pt", torch.ones(size + 1, 4), fingerprint="fedcba9876543210")
    with pytest.raises(ValueError, match=rf"{b} and {a} were trained with different dictionaries "
                                         r"\(`model.dictionary_fingerprint` fedcba9876543210 vs 0123456789abcdef\)"):
        cli.run(["average", str(a), str(b), "--out", str(tmp_path / "out" / "model.pt")])
    assert not (tmp_path / "out").exists()
    same = _checkpoint(tmp_path / "c.pt", 3 * torch.ones(size + 1, 4), fingerprint="0123456789abcdef")
    cli.main(["average", str(a), str(same), "--out", str(tmp_path / "out" / "model.pt")])
    assert torch.equal(checkpoint.load(tmp_path / "out" / "model.pt")["model"][EMBED], torch.full((size + 1, 4), 2.0))
