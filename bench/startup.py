"""Start-up time and peak memory of the pretraining task vs number of languages: ours vs stock.

Each point is a fresh process that sets up the task, loads the train split and builds the first
epoch's batches, as fairseq-train does before its first update: `xlmr_mlm` against fairseq's `multilingual_masked_lm`.

    .venv/bin/python -m bench.startup --data-bin DIR [--counts 5,10,20,40,80]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASKS = {"ours": ["--user-dir", str(REPO / "fairseq_xlmr"), "--task", "xlmr_mlm"],
         "stock": ["--task", "multilingual_masked_lm"]}

# Runs in the child: time the task set-up + train split load, report peak RSS.
_CHILD = r"""
import json, sys, time
start = time.perf_counter()
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
parser = options.get_training_parser()
args = options.parse_args_and_arch(parser, sys.argv[1:])
cfg = convert_namespace_to_omegaconf(args)
imported = time.perf_counter()
task = tasks.setup_task(cfg.task)
task.load_dataset("train", epoch=1)
# fairseq-train's first batch iterator: the epoch's language draw, ordering and batching.
batches = task.get_batch_iterator(task.dataset("train"), max_tokens=8192, max_positions=512, seed=1, epoch=1,
                                  ignore_invalid_inputs=True)  # stock makes 513-token samples
batches.next_epoch_itr(shuffle=True)
done = time.perf_counter()
# VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork + exec into ru_maxrss.
hwm_kb = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
print(json.dumps({"setup_s": done - imported, "import_s": imported - start,
                  "samples": len(task.dataset("train")), "peak_rss_mb": hwm_kb / 1024}))
"""


def subset_data_bin(data_bin: Path, languages, dest: Path) -> Path:
    """A data-bin holding only `languages` (symlinks): stock multilingual_masked_lm reads every subdir."""
    dest.mkdir(parents=True, exist_ok=True)
    os.symlink(data_bin / "dict.txt", dest / "dict.txt")
    for lang in languages:
        os.symlink(data_bin / lang, dest / lang)
    return dest


def measure(task: str, data: Path) -> dict:
    argv = [sys.executable, "-c", _CHILD, str(data), *TASKS[task], "--arch", "roberta", "--cpu",
            "--tokens-per-sample", "512", "--multilang-sampling-alpha", "0.3", "--seed", "1"]
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"{task} start-up on {data} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(data_bin, work_dir, counts):
    data_bin, work_dir = Path(data_bin).resolve(), Path(work_dir)
    shutil.rmtree(work_dir, ignore_errors=True)  # the subsets are symlink farms, rebuilt each run
    languages = sorted(p.name for p in data_bin.iterdir() if (p / "train.idx").exists())
    rows = []
    for n in [c for c in counts if c <= len(languages)]:
        data = subset_data_bin(data_bin, languages[:n], work_dir / f"langs{n}")
        for task in TASKS:
            rows.append({"languages": n, "task": task, **measure(task, data)})
            print(f"  start-up {task:5s} {n:3d} languages: {rows[-1]['setup_s']:.2f}s, "
                  f"peak RSS {rows[-1]['peak_rss_mb']:.0f} MB", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", required=True, help="xlmr binarize output with many languages")
    parser.add_argument("--counts", default="5,10,20,40,80", help="comma list of language counts")
    parser.add_argument("--work-dir", default="bench/out/startup")
    args = parser.parse_args(argv)
    run(args.data_bin, args.work_dir, [int(c) for c in args.counts.split(",")])


if __name__ == "__main__":
    main()
