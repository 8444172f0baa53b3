"""Load an XLM-R model directory (`model.pt`, `dict.txt`, `sentencepiece.bpe.model`) and use it.

Works for our checkpoints, for checkpoints written by stock fairseq RoBERTa, and for the 2019
XLM-R release layout (`decoder.sentence_encoder.*`, `emb_layer_norm`): all are loaded into
`xlmr_encoder`, whose parameter names are RoBERTa's (see `fairseq_xlmr.checkpoint`).
"""

import os

import sentencepiece as spm
import torch
from torch import nn

from fairseq_xlmr import checkpoint
from fairseq_xlmr.checkpoint import MASK
from fairseq_xlmr.files import CHECKPOINT_FILE, DICT_FILE, SPM_FILE


class XlmrHubInterface(nn.Module):
    """encode / decode / extract_features / fill_mask over a loaded model."""

    def __init__(self, model, dictionary, sentencepiece_model, task_cfg=None):
        super().__init__()
        self.model = model
        self.dictionary = dictionary
        self.sp = sentencepiece_model
        self.task_cfg = task_cfg or {}  # the checkpoint's `cfg.task` (fine-tuned heads: e.g. their pooling)

    @classmethod
    def from_pretrained(cls, model_dir, checkpoint_file=CHECKPOINT_FILE):
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
        dictionary = checkpoint.load_dictionary(paths["dictionary"])
        sp = spm.SentencePieceProcessor(model_file=paths["SentencePiece model"])
        state = checkpoint.load(paths["checkpoint"])
        model = checkpoint.model_from_state(state, paths["checkpoint"], dictionary)
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


def from_pretrained(model_dir, checkpoint_file=CHECKPOINT_FILE):
    return XlmrHubInterface.from_pretrained(model_dir, checkpoint_file)
