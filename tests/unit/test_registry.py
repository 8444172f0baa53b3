"""Every component registers under an `xlmr_` name and resolves to our class, through --user-dir."""

import argparse
import json
import os
import subprocess
import sys

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


# What the plugin registers, as fairseq's parser and registries see it in a fresh process (the snippets below).
EXPECTED = {"task": {"xlmr_mlm", "xlmr_alignment", "xlmr_sentence_classification", "xlmr_token_classification",
                     "xlmr_span_qa"},
            "criterion": {"xlmr_mlm", "xlmr_alignment", "xlmr_adversarial_mlm", "xlmr_distillation",
                          "xlmr_sentence_classification", "xlmr_token_classification", "xlmr_span_qa"},
            "arch": {"xlmr_encoder", *ARCHS}, "optimizer": {"xlmr_fused_adam"}}
REPORT = """
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.models import ARCH_MODEL_REGISTRY
from fairseq.optim import OPTIMIZER_REGISTRY
from fairseq.tasks import TASK_REGISTRY
from fairseq import checkpoint_utils
ours = lambda registry: sorted(name for name, cls in registry.items() if cls.__module__.startswith("fairseq_xlmr"))
print(json.dumps({"task": ours(TASK_REGISTRY), "criterion": ours(CRITERION_REGISTRY), "arch": ours(ARCH_MODEL_REGISTRY),
                  "optimizer": ours(OPTIMIZER_REGISTRY), "patched": hasattr(checkpoint_utils.load_checkpoint_to_cpu,
                  "_xlmr_patch")}))
"""


def _fresh_process(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", "import json, sys\n" + code + REPORT], capture_output=True, text=True,
                          cwd=os.path.dirname(USER_DIR), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _registered(report: dict) -> dict:
    return {kind: set(names) for kind, names in report.items() if kind != "patched"}


def test_fairseq_parser_with_user_dir_registers_everything_in_a_fresh_process():
    """What `fairseq-train --user-dir fairseq_xlmr` does: fairseq first, then the plugin through its parser."""
    report = _fresh_process(f"""
from fairseq import options
args = options.parse_args_and_arch(options.get_training_parser(), [
    "data-bin", "--user-dir", {USER_DIR!r}, "--task", "xlmr_mlm", "--arch", "xlmr_debug",
    "--criterion", "xlmr_alignment", "--optimizer", "xlmr_fused_adam"])
assert (args.task, args.arch, args.criterion, args.optimizer) == (
    "xlmr_mlm", "xlmr_debug", "xlmr_alignment", "xlmr_fused_adam"), args
""")
    assert _registered(report) == EXPECTED and report["patched"]


def test_user_dir_after_a_plain_import_of_the_package_still_registers():
    """fairseq's import_user_module skips a package already in sys.modules: the plugin registers itself when
    fairseq arrives (a test or script that imported a helper first, then runs fairseq-train in-process)."""
    report = _fresh_process(f"""
import fairseq_xlmr.files
assert "torch" not in sys.modules and "fairseq" not in sys.modules, "importing the package must stay light"
from fairseq import options
options.parse_args_and_arch(options.get_training_parser(), [
    "data-bin", "--user-dir", {USER_DIR!r}, "--task", "xlmr_span_qa", "--arch", "xlmr_base"])
""")
    assert _registered(report) == EXPECTED and report["patched"]


def test_importing_one_component_or_the_hub_registers_all_of_them():
    """A component module imports fairseq while it is itself half-imported: registration waits until it is done."""
    for first in ("from fairseq_xlmr.models.xlmr_encoder import XlmrEncoderModel",
                  "from fairseq_xlmr.hub import from_pretrained"):
        report = _fresh_process(first)
        assert _registered(report) == EXPECTED and report["patched"], first
