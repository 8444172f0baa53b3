"""Optimizer `xlmr_fused_adam`: AdamW (Loshchilov & Hutter, 2019) on PyTorch's fused kernels.

fairseq's `adam` is fast only when apex is importable; otherwise it steps every parameter in a
Python loop. PyTorch's own AdamW has a single-kernel `fused=True` path (CUDA, and CPU
since torch 2.4) with the same decoupled weight decay as fairseq's `adam`. On CPU the fused kernel
measured 3.3 ms/step against 10.8 for fairseq's loop and 19.2 for `foreach=True` (5.2M parameters,
2 threads), so `auto` picks it on both devices. The config surface (adam_betas, adam_eps, weight_decay) is fairseq adam's, so swapping
`--optimizer adam` for `--optimizer xlmr_fused_adam` changes nothing else.

Under fully sharded training (`--ddp-backend fully_sharded`) the parameters and Adam's moments are DTensors, of
which each rank holds a chunk: `state_dict` saves this rank's chunks as plain tensors, and `load_state_dict` takes
either such chunks (a sharded checkpoint) or whole tensors (an unsharded or consolidated one), cut to this rank.
"""

import ast
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, List

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II, OmegaConf

from fairseq_xlmr.modules import sharding

logger = logging.getLogger(__name__)

IMPLEMENTATIONS = ChoiceEnum(["auto", "fused", "foreach", "apex"])


@dataclass
class XlmrFusedAdamConfig(FairseqDataclass):
    adam_betas: Any = field(
        default=(0.9, 0.999), metadata={"help": "Adam betas, e.g. '(0.9, 0.98)' as RoBERTa/XLM-R used"}
    )
    adam_eps: float = field(default=1e-8, metadata={"help": "Adam epsilon (XLM-R recipe: 1e-6)"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay (XLM-R recipe: 0.01)"})
    implementation: IMPLEMENTATIONS = field(
        default="auto",
        metadata={
            "help": "auto: torch's fused kernel (CUDA and CPU); foreach: torch's multi-tensor path; "
            "apex: apex FusedAdam (must be installed)"
        },
    )
    lr: List[float] = II("optimization.lr")


def parse_betas(value):
    """Betas from YAML (a list), the CLI (a string such as '(0.9, 0.98)') or code (a tuple)."""
    if isinstance(value, str):
        value = ast.literal_eval(value)  # literals only, never eval()
    elif OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    betas = tuple(float(b) for b in value)
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(
            f"`optimizer.adam_betas` must be two numbers in [0, 1), got {value!r}; "
            "XLM-R used (0.9, 0.98)."
        )
    return betas


def choose_implementation(requested, device_type):
    if requested == "auto":
        return "fused" if device_type in ("cuda", "cpu") else "foreach"
    if requested == "apex":
        try:
            import apex.optimizers  # noqa: F401
        except ImportError:
            raise ValueError(
                "`optimizer.implementation` is 'apex' but apex is not installed; "
                "install apex or use 'auto' (PyTorch's fused kernel)."
            ) from None
    return requested


@register_optimizer("xlmr_fused_adam", dataclass=XlmrFusedAdamConfig)
class XlmrFusedAdam(FairseqOptimizer):
    def __init__(self, cfg: XlmrFusedAdamConfig, params):
        super().__init__(cfg)
        params = list(params)
        first = params[0]["params"][0] if isinstance(params[0], dict) else params[0]
        self.implementation = choose_implementation(cfg.implementation, first.device.type)
        if self.implementation == "apex":
            from apex.optimizers import FusedAdam

            self._optimizer = FusedAdam(params, adam_w_mode=True, **self.optimizer_config)
        else:
            flag = {"fused": True} if self.implementation == "fused" else {"foreach": True}
            self._optimizer = torch.optim.AdamW(params, **self.optimizer_config, **flag)
        logger.info("xlmr_fused_adam: %s implementation on %s", self.implementation, first.device.type)

    @property
    def optimizer_config(self):
        """Overrides the optimizer args stored in a checkpoint (e.g. a new lr on resume)."""
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {
            "lr": lr,
            "betas": parse_betas(self.cfg.adam_betas),
            "eps": self.cfg.adam_eps,
            "weight_decay": self.cfg.weight_decay,
        }

    @property
    def supports_flat_params(self):
        return True

    def state_dict(self):
        """torch's AdamW state; a sharded moment is this rank's chunk, its (param, key) listed in `sharded`."""
        state = self._optimizer.state_dict()
        chunks, sharded = {}, []
        for index, entries in state["state"].items():
            chunks[index] = sharding.local_state(entries)
            sharded += [[index, key] for key in sharding.sharded_keys(entries)]
        return dict(state, state=chunks, sharded=sharded) if sharded else state

    def load_state_dict(self, state_dict, optimizer_overrides=None):
        """A sharded run places each moment like its parameter, from this rank's chunk or the whole tensor."""
        params = [p for group in self._optimizer.param_groups for p in group["params"]]
        if any(sharding.is_sharded(p) for p in params):
            state_dict = dict(state_dict)
            state_dict.pop("sharded", None)
            state_dict["state"] = {
                index: {key: sharding.to_dtensor(value, params[index], f"optimizer state {key} of parameter {index}")
                        if sharding.is_sharded(params[index]) and torch.is_tensor(value) and value.dim() > 0
                        else value
                        for key, value in entries.items()}
                for index, entries in state_dict["state"].items()}
        else:
            state_dict = {key: value for key, value in state_dict.items() if key != "sharded"}
        super().load_state_dict(state_dict, optimizer_overrides)
