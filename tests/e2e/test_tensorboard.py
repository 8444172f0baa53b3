"""`--tensorboard-logdir` writes TensorBoard events of a real xlmr_mlm run (tensorboardX is a dependency)."""

import struct
from pathlib import Path

from tensorboardX.proto.event_pb2 import Event

from tests.fixtures.fairseq_run import USER_DIR, fairseq_train, tiny_model_args
from tests.fixtures.tiny_bin import make_tiny_data_bin


def scalar_tags(logdir: Path) -> set:
    """Tags of the scalar summaries in every events file under `logdir` (TFRecord: length, crc, Event, crc)."""
    tags = set()
    for path in logdir.rglob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            tags |= {value.tag for value in event.summary.value}
            pos += 12 + length + 4
    return tags


def test_tensorboard_logdir_gets_the_training_scalars(tmp_path):
    data = tmp_path / "data-bin"
    make_tiny_data_bin(data, ["en", "de"], {"en": 80, "de": 60}, valid_sentences=20)
    logdir = tmp_path / "tb"
    fairseq_train([data, "--user-dir", USER_DIR, "--task", "xlmr_mlm", "--criterion", "xlmr_mlm", *tiny_model_args(),
                   "--required-batch-size-multiple", "1", "--max-update", "4", "--save-dir", tmp_path / "ckpt",
                   "--tensorboard-logdir", logdir])
    assert {"loss", "loss_en", "loss_de", "lr"} <= scalar_tags(logdir / "train_inner")
