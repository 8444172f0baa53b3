"""Replaces `fairseq.options.add_model_args` (checked on ve-fairseq 0.12.3): an unknown `--arch xlmr_*` names
fairseq_xlmr's architectures instead of listing fairseq's ~160 on one line.

`get_training_parser` looks `add_model_args` up at call time, after importing the `--user-dir`; we give the
`--arch` argument a `type` check, which argparse runs before its choices check. Nothing changes if `--arch`
is not found.
"""

import argparse

from fairseq import options
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY

from fairseq_xlmr.patches.wrapping import replace


def check_architecture_name(name: str) -> str:
    """argparse `type` of `--arch`: an unknown `xlmr_*` name lists our architectures, not all of fairseq's."""
    if name.startswith("xlmr_") and name not in ARCH_MODEL_REGISTRY:
        # The presets; a model's own name (xlmr_encoder) is an --arch too, but with every size left at its default.
        ours = [arch for arch, model in ARCH_MODEL_REGISTRY.items()
                if model.__module__.startswith("fairseq_xlmr") and arch not in MODEL_REGISTRY]
        raise argparse.ArgumentTypeError(f"unknown architecture {name!r}; fairseq_xlmr's are {', '.join(ours)} "
                                         "(xlmr_debug: the tiny one for CPU runs).")
    return name


def checked_arch(add_model_args):
    def wrapper(parser):
        group = add_model_args(parser)
        arch = next((action for action in parser._actions if action.dest == "arch"), None)
        if arch is not None and arch.type is None:
            arch.type = check_architecture_name
        return group

    return wrapper


def apply() -> None:
    replace(options, "add_model_args", checked_arch)
