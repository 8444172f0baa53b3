"""Every YAML under hydra_configs/ composes the way fairseq-hydra-train composes it, with every run_config,
and holds the recipe its header states (docs/reference.md: the paper for pretraining, XTREME for fine-tuning)."""

import math
import re
import warnings
from pathlib import Path

import pytest
from fairseq.dataclass.initialize import add_defaults, hydra_init
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError

import fairseq_xlmr  # noqa: F401  (registers our components, as common.user_dir does)
from fairseq_xlmr.components import PluginCallback
from fairseq_xlmr.patches.training_loop import describe_global_batch
from tests.fixtures.fairseq_run import REPO

CONFIGS = Path(REPO) / "hydra_configs"
ALL = [(group, path.stem) for group in ("pretrain", "finetune") for path in sorted((CONFIGS / group).glob("*.yaml"))]
RUN_CONFIGS = [None] + sorted(path.stem for path in (CONFIGS / "run_config").glob("*.yaml"))

# docs/reference.md: RoBERTa's learning rate for each batch size (sequences of 512 tokens).
LR_BY_BATCH = {8192: 7e-4, 2048: 5e-4, 256: 1e-4}
# docs/reference.md, XTREME's XLM-R settings: task, lr (base), epochs, max length, selection metric.
FINETUNE = {
    "xnli": ("xlmr_sentence_classification", 2e-5, 5, 128, "accuracy"),
    "pawsx": ("xlmr_sentence_classification", 2e-5, 5, 128, "accuracy"),
    "ner": ("xlmr_token_classification", 2e-5, 10, 128, "f1"),
    "pos": ("xlmr_token_classification", 2e-5, 10, 128, "accuracy"),
    "mlqa": ("xlmr_span_qa", 3e-5, 2, 384, "f1"),
}


def compose_like_fairseq(group, name, overrides=()):
    """(config fairseq trains with, Hydra's own node) for `--config-dir hydra_configs/<group> --config-name <name>`.

    As fairseq-hydra-train: its FairseqConfig schema is stored under the config's name, the YAML
    composes on top, and `add_defaults` merges each component's dataclass (a key that the
    dataclass does not have fails there).
    """
    hydra_init(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fairseq's Hydra 1.1 compatibility mode warns on every compose
        with initialize_config_dir(config_dir=str(CONFIGS / group), job_name="hydra_train"):
            cfg = compose(config_name=name, overrides=list(overrides), return_hydra_config=True)
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    add_defaults(cfg)
    return cfg, hydra_cfg


def header(group, name) -> str:
    return "".join(line for line in (CONFIGS / group / f"{name}.yaml").read_text().splitlines(True)
                   if line.startswith("#"))


@pytest.mark.parametrize("run_config", RUN_CONFIGS)
@pytest.mark.parametrize("group,name", ALL)
def test_every_config_composes_with_every_run_config(group, name, run_config):
    overrides = [f"+run_config={run_config}"] if run_config else []
    cfg, hydra_cfg = compose_like_fairseq(group, name, overrides)

    assert "run_config" not in cfg  # Hydra found the group (a miss silently adds this key instead)
    assert cfg.criterion._name == cfg.task._name and cfg.task._name.startswith("xlmr_")
    assert cfg.optimizer._name == "xlmr_fused_adam" and cfg.model._name.startswith("xlmr_")
    assert OmegaConf.missing_keys(cfg) == {"task.data"}  # the one value every command line gives
    if run_config:
        (callback,) = hydra_cfg.callbacks.values()
        assert get_class(callback._target_) is PluginCallback
        assert hydra_cfg.job.chdir is False


@pytest.mark.parametrize("name", ["base", "large", "xl", "xxl"])
def test_pretraining_configs_hold_the_paper_recipe_and_their_batch_arithmetic(name):
    cfg, _ = compose_like_fairseq("pretrain", name)
    text = header("pretrain", name)
    gpus, batch_size, update_freq, sequences, tokens = map(int, re.search(
        r"Global batch: (\d+) GPUs × batch_size (\d+) × update_freq (\d+) = (\d+) sequences of (\d+) tokens",
        text).groups())
    assert (batch_size, [update_freq], tokens) == (cfg.dataset.batch_size, cfg.optimization.update_freq,
                                                   cfg.task.tokens_per_sample)
    assert gpus * batch_size * update_freq == sequences == 8192 and tokens == 512
    # The recipe for other GPU counts: update_freq = (8192 / batch_size) / G.
    assert int(re.search(r"update_freq=\[(\d+)/G\]", text).group(1)) == 8192 // batch_size
    assert describe_global_batch(cfg, gpus) == (f"{gpus} worker(s) × {batch_size} sequences × update_freq "
                                                f"{update_freq} = 8192 sequences per update")

    assert cfg.model._name == f"xlmr_{name}" and cfg.model.bf16_autocast is True
    assert (cfg.model.dropout, cfg.model.attention_dropout) == (0.1, 0.1)
    assert cfg.optimization.lr == [LR_BY_BATCH[sequences]] and cfg.optimization.max_update == 1_500_000
    assert (cfg.lr_scheduler._name, cfg.lr_scheduler.warmup_updates) == ("polynomial_decay", 10_000)
    assert cfg.lr_scheduler.total_num_update == cfg.optimization.max_update  # decay to 0 at the end
    opt = cfg.optimizer
    assert (list(opt.adam_betas), opt.adam_eps, opt.weight_decay) == ([0.9, 0.98], 1e-6, 0.01)
    assert (cfg.task._name, cfg.task.multilang_sampling_alpha, cfg.task.mask_prob) == ("xlmr_mlm", 0.3, 0.15)
    assert cfg.task.sampling_unit == "sentences"


# Parameters of an xlmr_encoder preset: layers × (attention, feed-forward, 2 LayerNorms), token and position
# embeddings, the LM head (dense, LayerNorm, output bias; its projection is the tied embedding), final LayerNorm.
def parameters(layers, dim, ffn, vocab=250002, positions=514):
    layer = 4 * dim * dim + 4 * dim + 2 * dim * ffn + dim + ffn + 4 * dim
    return layers * layer + (vocab + positions) * dim + dim * dim + 3 * dim + vocab + 2 * dim


@pytest.mark.parametrize("name, sizes", [("xl", (36, 2560, 10240)), ("xxl", (48, 4096, 16384))])
def test_xl_and_xxl_are_sharded_and_their_headers_memory_arithmetic_holds(name, sizes):
    from fairseq.models import ARCH_CONFIG_REGISTRY

    from fairseq_xlmr.patches.fully_sharded import check_config

    cfg, _ = compose_like_fairseq("pretrain", name, ["distributed_training.distributed_world_size=64"])
    assert (cfg.distributed_training.ddp_backend, cfg.distributed_training.use_sharded_state) == ("fully_sharded", True)
    check_config(cfg)  # the sharded backend accepts it as it is
    preset = OmegaConf.create({"_name": cfg.model._name})
    with open_dict(preset):
        ARCH_CONFIG_REGISTRY[cfg.model._name](preset)
    layers, dim, ffn = sizes
    assert (preset.encoder_layers, preset.encoder_embed_dim, preset.encoder_ffn_embed_dim) == sizes
    count = parameters(layers, dim, ffn)
    text = " ".join(line.lstrip("# ") for line in header("pretrain", name).splitlines())
    assert f"{count / 1e9:.2f}B parameters" in text
    gpus = int(re.search(r"Memory per 80 GB GPU, sharded over G = (\d+)", text).group(1))
    assert gpus * cfg.dataset.batch_size * cfg.optimization.update_freq[0] == 8192
    assert f"16 bytes × {count / 1e9:.2f}B parameters = {16 * count / 1e9:.1f} GB unsharded; / {gpus} = " \
           f"{16 * count / gpus / 1e9:.2f} GB" in text
    # Activations: ~34 bytes × tokens × hidden size per layer and sequence; checkpointed, each layer's bf16
    # input plus one layer recomputed.
    per_sequence = 34 * 512 * dim * layers / 1e9
    checkpointed = (2 * 512 * dim * layers + 34 * 512 * dim) / 1e9
    batch = cfg.dataset.batch_size
    assert f"{per_sequence:.1f} GB per sequence, × batch_size {batch} = {per_sequence * batch:.1f} GB" in text
    assert f"{checkpointed:.2f} GB per sequence, {checkpointed * batch:.1f} GB" in text


@pytest.mark.parametrize("name", sorted(FINETUNE))
def test_finetuning_configs_hold_xtremes_settings(name):
    task, lr, epochs, max_length, metric = FINETUNE[name]
    cfg, _ = compose_like_fairseq("finetune", name)
    assert (cfg.task._name, cfg.optimization.lr, cfg.optimization.max_epoch) == (task, [lr], epochs)
    assert (cfg.dataset.batch_size, cfg.task.max_length) == (32, max_length)
    assert (cfg.checkpoint.best_checkpoint_metric, cfg.checkpoint.maximize_best_checkpoint_metric) == (metric, True)
    assert cfg.lr_scheduler._name == "polynomial_decay" and cfg.lr_scheduler.power == 1.0  # linear decay
    # The decay horizon is the header's arithmetic: epochs × ceil(English training examples / 32).
    horizon = re.search(r"max_update (\d+) = (\d+) epochs × (?:ceil\()?~?([\d,.]+k?)", header("finetune", name))
    assert int(horizon.group(1)) == cfg.optimization.max_update and int(horizon.group(2)) == epochs
    if "k" not in horizon.group(3):
        assert cfg.optimization.max_update == epochs * math.ceil(int(horizon.group(3).replace(",", "")) / 32)
    assert f"lr {lr:.0e}".replace("e-0", "e-") in header("finetune", name)
    if task == "xlmr_token_classification":
        assert cfg.task.metric == metric  # the metric the task logs is the one that selects the model
    if task == "xlmr_span_qa":
        assert (cfg.lr_scheduler.warmup_updates, cfg.task.doc_stride, cfg.task.n_best) == (500, 128, 20)


def test_a_misspelt_field_fails_composition():
    with pytest.raises(ConfigKeyError, match="multilang_sampling_alfa"):
        compose_like_fairseq("pretrain", "base", ["+task.multilang_sampling_alfa=0.3"])


def test_slurm_run_config_takes_the_per_job_values_of_the_sbatch_scripts(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "3")
    cfg, hydra_cfg = compose_like_fairseq("pretrain", "base", [
        "+run_config=slurm", "distributed_training.distributed_world_size=32",
        "distributed_training.distributed_port=14242", "checkpoint.save_dir=/runs/xlmr-42/checkpoints",
        "hydra.run.dir=/runs/xlmr-42/hydra/rank${oc.env:SLURM_PROCID}",
    ])
    assert (cfg.distributed_training.distributed_world_size, cfg.distributed_training.distributed_port) == (32, 14242)
    assert cfg.checkpoint.save_dir == "/runs/xlmr-42/checkpoints" and cfg.checkpoint.save_interval_updates > 0
    assert hydra_cfg.run.dir == "/runs/xlmr-42/hydra/rank3"  # each task writes its own Hydra directory
