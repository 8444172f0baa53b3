"""`xlmr binarize --spm-model <disjoint dir>`: the ablation without anchor points (Conneau et al., 2020, §5: shared
vocabulary), each language encoded with its own SentencePiece model into its own id range of one dict.txt.
"""

import shutil
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from fairseq_xlmr.files import DICT_FILE, temp_dir_beside
from fairseq_xlmr.preprocess.binarize import LanguageSummary, binarize, check_dest_dir, install
from fairseq_xlmr.preprocess.spm import resolve_language_files


def binarize_disjoint(corpus_dir: Path, spm_dir: Path, dest_dir: Path, languages: Optional[Sequence[str]] = None,
                      overwrite: bool = False, quiet: bool = False, **options) -> List[LanguageSummary]:
    """Ablation "no anchor points": each language encoded with its own SentencePiece model of
    `xlmr train-spm --disjoint-vocab` into its own id range of the joint dict.txt.

    Every language goes through `binarize` with its own model and dict (same splits, shards and
    checks), then its ids are mapped to the joint dict; `options` are `binarize`'s (workers, ...).
    """
    from fairseq.data import Dictionary
    from fairseq.data.indexed_dataset import MMapIndexedDataset, best_fitting_int_dtype

    from fairseq_xlmr.preprocess.spm import disjoint_piece, is_disjoint_vocab, read_disjoint_manifest

    spm_dir, dest_dir = Path(spm_dir), Path(dest_dir)
    if not is_disjoint_vocab(spm_dir):
        raise ValueError(f"--spm-model {str(spm_dir)!r} is a directory but not one written by `xlmr train-spm "
                         "--disjoint-vocab` (no disjoint_vocab.json); pass a sentencepiece.bpe.model file instead.")
    models = read_disjoint_manifest(spm_dir)
    languages = list(languages or resolve_language_files(corpus_dir, None))
    missing = [lang for lang in languages if lang not in models]
    if missing:
        raise ValueError(f"--languages {','.join(missing)} have no model in {spm_dir} (it has "
                         f"{','.join(models)}); train the disjoint vocabulary with them or leave them out.")
    check_dest_dir(dest_dir, overwrite)
    joint = Dictionary.load(str(spm_dir / DICT_FILE))
    dtype = best_fitting_int_dtype(len(joint))

    tmp = temp_dir_beside(dest_dir)
    summaries = []
    try:
        for lang in languages:
            own = tmp / "_own" / lang
            summaries += binarize(corpus_dir, models[lang], own, dict_path=models[lang].parent / DICT_FILE,
                                  languages=[lang], quiet=quiet, **options)
            local = Dictionary.load(str(models[lang].parent / DICT_FILE))
            # Local id -> joint id; the specials (<s>, <pad>, </s>, <unk>) are shared by all languages.
            table = np.array([i if i < local.nspecial else joint.index(disjoint_piece(local[i], lang))
                              for i in range(len(local))], dtype=np.int64)
            lost = [local[i] for i in range(local.nspecial, len(local)) if table[i] == joint.unk()]
            if lost:
                raise ValueError(f"{spm_dir / DICT_FILE} lacks {len(lost)} {lang} pieces (first: {lost[0]!r}); "
                                 "it does not belong to these models: rerun `xlmr train-spm --disjoint-vocab`.")
            for index_path in sorted(own.rglob("*.idx")):
                prefix = index_path.with_suffix("")
                index = MMapIndexedDataset.Index(str(index_path))
                local_dtype, sizes = index.dtype, index.sizes.tolist()
                del index
                target = tmp / prefix.relative_to(own)
                target.parent.mkdir(parents=True, exist_ok=True)
                table[np.fromfile(f"{prefix}.bin", dtype=local_dtype)].astype(dtype).tofile(f"{target}.bin")
                with MMapIndexedDataset.Index.writer(f"{target}.idx", dtype) as writer:
                    writer.write(sizes)
            shutil.rmtree(own)
        shutil.rmtree(tmp / "_own")
        for d in [tmp] + sorted(tmp.glob("shard*")):
            shutil.copyfile(spm_dir / DICT_FILE, d / DICT_FILE)
        install(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        print(f"[binarize] disjoint vocabulary: {len(languages)} languages, each in its own id range of "
              f"{spm_dir / DICT_FILE}; wrote {dest_dir}", flush=True)
    return summaries
