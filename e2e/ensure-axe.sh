#!/usr/bin/env bash
# Make sure axe-core (Deque's accessibility engine, from the npm registry) is cached, for the browser
# tests of `kubectl models ui`: e2e/test_ui_browser.py injects axe.min.js into each page over the
# DevTools protocol and fails on any serious or critical violation.
#
# Pinned version and the registry's sha512 integrity; fetched once with npm (`npm pack`, which checks
# the integrity too) or, without npm, the same tarball over HTTPS; the hash is checked either way.
# Cached under ~/.cache/modelversioning/axe-core-VERSION/. Prints axe.min.js's path on the last line.
set -euo pipefail

VERSION=4.14.1
INTEGRITY="sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
TARBALL="https://registry.npmjs.org/axe-core/-/axe-core-${VERSION}.tgz"

CACHE="${MV_CACHE:-$HOME/.cache/modelversioning}/axe-core-${VERSION}"
OUT="$CACHE/axe.min.js"

if [[ ! -s "$OUT" ]]; then
  tmp=$(mktemp -d -t mv-axe.XXXXXX)
  trap 'rm -rf "$tmp"' EXIT
  echo "[$(date +%H:%M:%S)] axe-core ${VERSION} from the npm registry" >&2
  tgz="$tmp/axe-core-${VERSION}.tgz"
  if command -v npm >/dev/null; then
    (cd "$tmp" && npm pack --silent "axe-core@${VERSION}" >/dev/null)
  else
    curl -fsSL --retry 3 -o "$tgz" "$TARBALL"
  fi
  got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
  if [[ "$got" != "$INTEGRITY" ]]; then
    echo "error: axe-core-${VERSION}.tgz: integrity $got, expected $INTEGRITY" >&2
    exit 1
  fi
  tar -xzf "$tgz" -C "$tmp" package/axe.min.js package/LICENSE
  mkdir -p "$CACHE"
  cp "$tmp/package/LICENSE" "$CACHE/LICENSE"
  cp "$tmp/package/axe.min.js" "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
