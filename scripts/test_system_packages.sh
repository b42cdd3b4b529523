#!/usr/bin/env bash
# The Debian packages `make test` needs, installed when they are missing (the Makefile runs
# this before pytest): chromium and chromium-driver for the browser tests
# (tests/service/test_ui.py), wordnet-base for tests/unit/test_label_hierarchy.py. As root with
# apt-get (CI, a fresh container) it installs them; otherwise it prints the one command to run
# and fails here rather than deep in pytest.
#
# What it checks can be pointed elsewhere (tests/repo/test_makefile.py does): the commands are
# looked up on PATH, the WordNet file is $IMAGETAGGER_WORDNET_NOUN.
set -euo pipefail

PACKAGES=(chromium chromium-driver wordnet-base)
WORDNET_NOUN=${IMAGETAGGER_WORDNET_NOUN:-/usr/share/wordnet/data.noun}

missing=()
command -v chromium >/dev/null 2>&1 || missing+=("chromium (package chromium)")
command -v chromedriver >/dev/null 2>&1 || missing+=("chromedriver (package chromium-driver)")
[ -f "$WORDNET_NOUN" ] || missing+=("$WORDNET_NOUN (package wordnet-base)")

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "make test needs system packages; missing: ${missing[*]}" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${PACKAGES[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${PACKAGES[@]}"
    exit 0
fi

echo "Install them (Debian or Ubuntu), then run make test again:" >&2
echo "    sudo apt-get install ${PACKAGES[*]}" >&2
exit 1
