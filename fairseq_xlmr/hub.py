"""Load an XLM-R model directory (`model.pt`, `dict.txt`, `sentencepiece.bpe.model`) and use it.

Works for our checkpoints, for checkpoints written by stock fairseq RoBERTa, and for the 2019
XLM-R release layout (`decoder.sentence_encoder.*`, `emb_layer_norm`): all are loaded into
`xlmr_encoder`, whose parameter names are RoBERTa's.
"""

import argparse
import os
from types import SimpleNamespace

import sentencepiece as spm
import torch
from fairseq.data import Dictionary
from omegaconf import OmegaConf
from torch import nn

from fairseq_xlmr import checkpoint
from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderConfig, XlmrEncoderModel

SPM_FILE = "sentencepiece.bpe.model"  # XLM-R's name for it, although the model is a unigram LM
DICT_FILE = "dict.txt"
MASK = "<mask>"


def load_dictionary(path):
    """fairseq Dictionary with `<mask>` appended last, as the MLM task builds it (mask = len - 1)."""
    dictionary = Dictionary.load(path)
    dictionary.add_symbol(MASK)
    return dictionary


def model_config_from_state(state):
    """Our model config from a checkpoint's `cfg.model` (dict or Namespace) or legacy `args`."""
    source = None
    if state.get("cfg") is not None:
        source = state["cfg"]["model"]
    if source is None:
        source = state.get("args")
    if source is None:
        raise ValueError("checkpoint has neither `cfg` nor `args`; it was not written by fairseq")
    if isinstance(source, argparse.Namespace):
        source = vars(source)
    elif OmegaConf.is_config(source):
        source = OmegaConf.to_container(source)
    names = [f.name for f in XlmrEncoderConfig.__dataclass_fields__.values()]
    cfg = argparse.Namespace(**{name: source[name] for name in names if source.get(name) is not None})
    cfg.load_checkpoint_heads = True  # keep any classification heads the checkpoint has
    if "layernorm_embedding" not in source:
        # 2019 checkpoints predate the flag: post-LN RoBERTa always had the embedding LayerNorm.
        cfg.layernorm_embedding = not source.get("encoder_normalize_before", False)
    return cfg


def embedding_rows(model_state):
    for key in ("encoder.sentence_encoder.embed_tokens.weight", "decoder.sentence_encoder.embed_tokens.weight"):
        if key in model_state:
            return model_state[key].shape[0]
    raise ValueError("checkpoint has no `*.sentence_encoder.embed_tokens.weight`: not a RoBERTa/XLM-R model")


def load_model(checkpoint_path, dictionary):
    """Build `xlmr_encoder` from a checkpoint's config and load its weights (strict)."""
    return model_from_state(checkpoint.load(checkpoint_path), checkpoint_path, dictionary)


def model_from_state(state, checkpoint_path, dictionary):
    """`load_model` on a checkpoint already read (`checkpoint_path` names it in errors)."""
    rows = embedding_rows(state["model"])
    if rows != len(dictionary):
        raise ValueError(
            f"{checkpoint_path} has {rows} embedding rows but the dictionary has {len(dictionary)} "
            f"entries (dict.txt + 4 specials + {MASK}); the dict.txt does not belong to this checkpoint. "
            "Fix: use the dict.txt that was written next to the model (or by `xlmr train-spm` for it)."
        )
    cfg = model_config_from_state(state)
    model = XlmrEncoderModel.build_model(cfg, SimpleNamespace(source_dictionary=dictionary))
    model.load_state_dict(state["model"], strict=True)  # upgrades 2019 key names first
    return model.eval()


class XlmrHubInterface(nn.Module):
    """encode / decode / extract_features / fill_mask over a loaded model."""

    def __init__(self, model, dictionary, sentencepiece_model, task_cfg=None):
        super().__init__()
        self.model = model
        self.dictionary = dictionary
        self.sp = sentencepiece_model
        self.task_cfg = task_cfg or {}  # the checkpoint's `cfg.task` (fine-tuned heads: e.g. their pooling)

    @classmethod
    def from_pretrained(cls, model_dir, checkpoint_file="model.pt"):
        paths = {
            "checkpoint": os.path.join(model_dir, checkpoint_file),
            "dictionary": os.path.join(model_dir, DICT_FILE),
            "SentencePiece model": os.path.join(model_dir, SPM_FILE),
        }
        for what, path in paths.items():
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{what} not found: expected {path}. An XLM-R model directory holds "
                    f"{checkpoint_file}, {DICT_FILE} and {SPM_FILE}; copy the missing file "
                    "from where the model was trained (or `xlmr train-spm` output)."
                )
        dictionary = load_dictionary(paths["dictionary"])
        sp = spm.SentencePieceProcessor(model_file=paths["SentencePiece model"])
        state = checkpoint.load(paths["checkpoint"])
        model = model_from_state(state, paths["checkpoint"], dictionary)
        return cls(model, dictionary, sp, (state.get("cfg") or {}).get("task"))

    @property
    def device(self):
        return next(self.model.parameters()).device

    def pieces_to_ids(self, pieces):
        return [self.dictionary.index(p) for p in pieces]

    def encode(self, sentence, *more_sentences):
        """`<s> A </s>` or, for pairs, `<s> A </s></s> B </s>` as a LongTensor `(seq_len,)`."""
        bos, eos = self.dictionary.bos(), self.dictionary.eos()
        ids = [bos] + self.pieces_to_ids(self.sp.encode(sentence, out_type=str)) + [eos]
        for extra in more_sentences:
            ids += [eos] + self.pieces_to_ids(self.sp.encode(extra, out_type=str)) + [eos]
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, tokens):
        """Inverse of encode; sentences of a pair come back as a list."""
        special = {self.dictionary.bos(), self.dictionary.pad()}
        sentences, current = [], []
        for idx in tokens.tolist():
            if idx == self.dictionary.eos():
                if current:
                    sentences.append(self.sp.decode_pieces(current))
                current = []
            elif idx not in special:
                current.append(self.dictionary[idx])
        if current:
            sentences.append(self.sp.decode_pieces(current))
        return sentences[0] if len(sentences) == 1 else sentences

    @torch.no_grad()
    def extract_features(self, tokens, return_all_hiddens=False):
        """tokens `(seq_len,)` or `(batch, seq_len)` -> `(batch, seq_len, dim)`, or the list of
        embedding output + every layer's output when return_all_hiddens."""
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
        features, extra = self.model(tokens.to(self.device), features_only=True, return_all_hiddens=return_all_hiddens)
        if return_all_hiddens:
            return [state.transpose(0, 1) for state in extra["inner_states"]]
        return features

    @torch.no_grad()
    def fill_mask(self, masked_input, topk=5):
        """Top-k fillers of the single `<mask>` in `masked_input`: [(text, probability, piece)]."""
        if masked_input.count(MASK) != 1:
            raise ValueError(f"fill_mask needs exactly one {MASK} in the input, got {masked_input!r}")
        left, right = masked_input.split(MASK)
        # Encode the spans separately (as fairseq does) so the mask stands for whole pieces.
        left_pieces = self.sp.encode(left.rstrip(), out_type=str) if left.strip() else []
        right_pieces = self.sp.encode(right, out_type=str) if right.strip() else []
        ids = (
            [self.dictionary.bos()] + self.pieces_to_ids(left_pieces) + [self.dictionary.index(MASK)]
            + self.pieces_to_ids(right_pieces) + [self.dictionary.eos()]
        )
        tokens = torch.tensor(ids, dtype=torch.long, device=self.device).unsqueeze(0)
        logits, _ = self.model(tokens)
        probs = logits[0, len(left_pieces) + 1].softmax(dim=-1)
        values, indices = probs.topk(topk)
        results = []
        for prob, idx in zip(values.tolist(), indices.tolist()):
            piece = self.dictionary[idx]
            results.append((self.sp.decode_pieces(left_pieces + [piece] + right_pieces), prob, piece))
        return results


def from_pretrained(model_dir, checkpoint_file="model.pt"):
    return XlmrHubInterface.from_pretrained(model_dir, checkpoint_file)
