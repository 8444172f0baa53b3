"""FreeDict (dictd) parsing, wordfreq ranking and MUSE splits on tiny hand-made files (no network)."""

import gzip
import json
import shutil
import subprocess
import zipfile
from argparse import Namespace

import pytest

from fairseq_xlmr.analysis.features import load_dictionaries
from fairseq_xlmr.files import read_muse
from fairseq_xlmr.preprocess import dictionaries
from fairseq_xlmr.preprocess.dictionaries import (
    decode_b64,
    dictd_entries,
    is_word,
    parse_entry,
    parse_index,
    rank_pairs,
    split_by_source_rank,
    wordfreq_ranks,
)

# Entries in the styles of the real packages: eng-deu (parts of speech, glosses, examples, see-also),
# eng-hin (numbered senses, quoted examples), eng-tur (run-on derived words), eng-jpn (English glosses).
ENTRIES = [
    "dog /dˈɒɡ/\nHund <masc> [zool.]\n      \"train a dog\"  - einen Hund abrichten\n   Synonym: {dawg}\n\n see: {dogs}\n\n",
    "run /ɹˈʌn/ (ran /ɹˈan/ <>, run /ɹˈʌn/ <>) <v>\nrennen, schnell laufen <v, intr>\n see: {running}\n\n",
    "big /bˈɪɡ/ <Adj>\n1. बड़ा\n      \"There is a big ground.\"\n2. महत्वपूर्ण\n",
    "lucre /lˈuːkə/\n1. para, servet. filthy lucre (şaka) para, akçe.\n",
    "laughable //ˈlaːfəbl̩// <adj>\n人笑わせ, 可笑しい\nfitted to excite laughter\n",
    "run /ɹˈʌn/\n [Am.] Laufmasche <fem>, Fallmasche <fem> [textil.]\n",
]


def b64(number: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = ""
    while True:
        digits = alphabet[number % 64] + digits
        number //= 64
        if not number:
            return digits


def dictd(entries):
    """(index text, data bytes) of a dictd database holding `entries`, plus its info entry."""
    data, index = b"", []
    for word, text in [("00databaseinfo", "00-database-info\nAbout this dictionary\n")] + \
            [(e.split(" ")[0], e) for e in entries]:
        raw = text.encode("utf-8")
        index.append(f"{word}\t{b64(len(data))}\t{b64(len(raw))}")
        data += raw
    index.append(index[1])  # a second index line pointing at the first entry: read once
    return "\n".join(index) + "\n", data


def test_decode_b64_and_index():
    assert decode_b64("A") == 0 and decode_b64("B+") == 126 and decode_b64("DrWFI") == 3 * 64 ** 4 + 43 * 64 ** 3 + 22 * 64 ** 2 + 5 * 64 + 8
    assert parse_index("a romp\tDrWFI\tCL\n") == [("a romp", decode_b64("DrWFI"), 139)]
    with pytest.raises(ValueError, match="not a dictd base64 number"):
        decode_b64("A-")
    with pytest.raises(ValueError, match="line 1 needs word<TAB>offset<TAB>length"):
        parse_index("word 12 3\n")


@pytest.mark.parametrize("entry, expected", [
    (ENTRIES[0], ("dog", ["Hund"])),
    (ENTRIES[1], ("run", ["rennen", "schnell laufen"])),
    (ENTRIES[2], ("big", ["बड़ा", "महत्वपूर्ण"])),
    (ENTRIES[3], ("lucre", ["para", "servet"])),
    (ENTRIES[4], ("laughable", ["人笑わせ", "可笑しい", "fitted to excite laughter"])),
    (ENTRIES[5], ("run", ["Laufmasche", "Fallmasche"])),
])
def test_parse_entry_styles(entry, expected):
    assert parse_entry(entry) == expected


def test_dictd_entries_skip_info_and_duplicates():
    index, data = dictd(ENTRIES[:2])
    assert [headword for headword, _ in dictd_entries(index, data)] == ["dog", "run"]


def test_is_word_keeps_combining_marks_and_drops_latin_glosses():
    assert is_word("बड़ा", "hi") and is_word("größe", "de") and is_word("可笑しい", "ja")
    assert not is_word("fitted", "ja") and not is_word("schnell laufen", "de") and not is_word("x2", "de")
    assert is_word("house", "de")  # a shared spelling is a real pair in Latin-script languages


def test_wordfreq_ranks_and_ranked_pairs():
    ranks = wordfreq_ranks([{"format": "cB", "version": 1}, [], ["the", "dog"], ["run", "big"]])
    assert ranks == {"the": 0, "dog": 1, "run": 2, "big": 3}
    with pytest.raises(ValueError, match="not a wordfreq cBpack"):
        wordfreq_ranks([["the"]])
    de = {"hund": 0, "rennen": 1, "laufmasche": 2, "fallmasche": 3, "köter": 4}
    entries = [("Dog", ["Hund", "Köter", "Hund"]), ("run", ["Fallmasche", "rennen", "Laufmasche"]),
               ("big dog", ["Riesenhund"]), ("cat", ["Katze"])]
    # Ordered by the English rank (dog 1 < run 2), then the German one; at most 2 per word; "cat" is
    # not in the English list and "big dog" is two words.
    assert rank_pairs(entries, ranks, de, "de", max_translations=2) == [
        ("dog", "hund"), ("dog", "köter"), ("run", "rennen"), ("run", "laufmasche")]


def test_muse_split_by_source_rank_and_reading(tmp_path):
    pairs = [("a", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("d", "5"), ("d", "6")]
    train, test = split_by_source_rank(pairs, train_words=2, test_words=1)
    assert train == [("a", "1"), ("a", "2"), ("b", "3")] and test == [("c", "4")]
    path = tmp_path / "en-xx.txt"
    path.write_text("a 1\na\t2\n\nb 3\n", encoding="utf-8")
    assert read_muse(path) == [("a", "1"), ("a", "2"), ("b", "3")]
    path.write_text("a 1\nbad line here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"en-xx.txt:2: a MUSE dictionary line is `source target`"):
        read_muse(path)


def test_load_dictionaries_reads_a_split_dir_in_either_direction(tmp_path):
    (tmp_path / "en-de.0-2.txt").write_text("dog hund\nrun rennen\n", encoding="utf-8")
    (tmp_path / "en-de.2-3.txt").write_text("big groß\n", encoding="utf-8")
    assert load_dictionaries(tmp_path, "en", "de", 2, 1) == ([("dog", "hund"), ("run", "rennen")], [("big", "groß")])
    assert load_dictionaries(tmp_path, "de", "en", 2, 1)[1] == [("groß", "big")]
    with pytest.raises(ValueError, match="en-fr.0-2.txt"):
        load_dictionaries(tmp_path, "en", "fr", 2, 1)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_fetch_dictionaries_command_on_a_fake_package(tmp_path, monkeypatch, capsys):
    msgpack = pytest.importorskip("msgpack", reason="the optional extra [dictionaries]")
    # A .deb laid out as dict-freedict-eng-deu and a wheel holding wordfreq's msgpack files, so that the
    # real command runs from its downloads on: extraction, parsing, ranking, splits, outputs.
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: dict-freedict-eng-deu\nVersion: 1\nArchitecture: all\n"
                                             "Maintainer: test <t@t>\nDescription: test\n")
    share = root / "usr/share/dictd"
    share.mkdir(parents=True)
    index, data = dictd(ENTRIES[:2] + ["house /hˈaʊs/\nHaus <neut>\n", "cat /kˈat/\nKatze <fem>\n"])
    (share / "freedict-eng-deu.index").write_text(index, encoding="utf-8")
    (share / "freedict-eng-deu.dict.dz").write_bytes(gzip.compress(data))
    deb = tmp_path / "fake.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)
    wheel = tmp_path / "wordfreq.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for lang, bins in (("en", [["dog", "house"], ["run", "cat"]]), ("de", [["haus", "hund"], ["rennen", "katze"]])):
            packed = msgpack.packb([{"format": "cB", "version": 1}] + bins)
            archive.writestr(f"wordfreq/data/small_{lang}.msgpack.gz", gzip.compress(packed))
    monkeypatch.setattr(dictionaries, "pip_download", lambda pkg, cache: wheel)
    monkeypatch.setattr(dictionaries, "ensure_downloads",
                        lambda pkgs, cache, allow: {p.name: (deb, "sha") for p in pkgs})
    out = tmp_path / "out"
    args = Namespace(out_dir=str(out), languages="de", cache_dir=str(tmp_path / "cache"), max_translations=5,
                     train_words=2, test_words=1, allow_unpinned=False)
    assert dictionaries.run(args) == 0
    assert (out / "en-de.txt").read_text() == "dog hund\nhouse haus\nrun rennen\ncat katze\n"
    assert (out / "en-de.0-2.txt").read_text() == "dog hund\nhouse haus\n"
    assert (out / "en-de.2-3.txt").read_text() == "run rennen\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["languages"]["de"] == {"entries": 4, "pairs": 4, "source_words": 4, "train_pairs": 2,
                                          "test_pairs": 1, "test_source_words": 1}
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split() == ["en-de", "4", "4", "4", "2", "1"]
    with pytest.raises(ValueError, match="`--languages` must be a comma list of de, fr"):
        dictionaries.run(Namespace(**{**vars(args), "languages": "xx"}))
