"""Every component registers under an `xlmr_` name and resolves to our class, through --user-dir."""

import argparse

from fairseq import utils
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.optim import OPTIMIZER_REGISTRY
from fairseq.tasks import TASK_REGISTRY
from fairseq.criterions import CRITERION_REGISTRY

from tests.fixtures.fairseq_run import USER_DIR

ARCHS = ["xlmr_debug", "xlmr_base", "xlmr_large", "xlmr_xl", "xlmr_xxl"]


def _ours(registry):
    return {name: cls for name, cls in registry.items() if cls.__module__.startswith("fairseq_xlmr")}


def test_user_dir_registers_every_component_under_an_xlmr_name():
    utils.import_user_module(argparse.Namespace(user_dir=USER_DIR))
    from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel
    from fairseq_xlmr.optim.xlmr_fused_adam import XlmrFusedAdam

    assert MODEL_REGISTRY["xlmr_encoder"] is XlmrEncoderModel
    for arch in ARCHS:
        assert ARCH_MODEL_REGISTRY[arch] is XlmrEncoderModel
    assert OPTIMIZER_REGISTRY["xlmr_fused_adam"] is XlmrFusedAdam

    registered = {}
    for kind, registry in (("model", MODEL_REGISTRY), ("arch", ARCH_MODEL_REGISTRY), ("task", TASK_REGISTRY),
                           ("criterion", CRITERION_REGISTRY), ("optimizer", OPTIMIZER_REGISTRY)):
        for name in _ours(registry):
            registered[f"{kind}:{name}"] = name
    assert registered, "nothing of ours was registered"
    # fairseq silently keeps its own class when a plugin reuses a name: ours must all be prefixed.
    assert all(name.startswith("xlmr_") for name in registered.values()), registered
    # Each name must resolve to our class, not to a fairseq built-in of the same name.
    for key, name in registered.items():
        kind = key.split(":")[0]
        registry = {"model": MODEL_REGISTRY, "arch": ARCH_MODEL_REGISTRY, "task": TASK_REGISTRY,
                    "criterion": CRITERION_REGISTRY, "optimizer": OPTIMIZER_REGISTRY}[kind]
        assert registry[name].__module__.startswith("fairseq_xlmr"), key
