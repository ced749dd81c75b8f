#!/usr/bin/env bash
# Prepares .carry/deps: headers and shared libraries of the Debian packages the build needs that the GPU
# machine lacks (utf8proc, PCRE2, OpenSSL), extracted from Debian's .debs, for machines where nothing can be
# installed. scripts/build.sh picks them up when .carry/deps exists. Run here (where apt works), then carry
# .carry with the run.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="$PWD/.carry/deps"
[ -f "$DEST/.done" ] && exit 0
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download libutf8proc-dev libutf8proc2 libpcre2-dev libpcre2-8-0 libssl-dev libssl3 >/dev/null)
mkdir -p "$DEST"
for f in "$tmp"/*.deb; do dpkg-deb -x "$f" "$DEST"; done
# pkg-config files carry prefix=/usr: point them at the extracted tree.
for pc in "$DEST"/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc; do
  sed -i 's|^prefix=.*|prefix=${pcfiledir}/../../..|' "$pc"
done
rm -rf "$tmp" "$DEST"/usr/share "$DEST"/usr/lib/x86_64-linux-gnu/*.a "$DEST"/usr/lib/x86_64-linux-gnu/{engines-3,ossl-modules} "$DEST"/usr/bin
touch "$DEST/.done"
