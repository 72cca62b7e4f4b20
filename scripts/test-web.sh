#!/usr/bin/env bash
# Builds the web page (scripts/build-web.sh) and the native gradflow binary that serves it, then
# runs web/tests in headless Chromium: the page's self-test and every view. Exits non-zero when
# a build or a test fails. Screenshots go to $GRADFLOW_SCREENSHOTS (default web/tests/out).
#
#   scripts/test-web.sh
#
# Needs node/npm and Chromium ($CHROMIUM, default /usr/bin/chromium: Debian's `chromium`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "test-web.sh: no browser at $chromium: apt-get install chromium (or set CHROMIUM)" >&2
    exit 1
fi
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "test-web.sh: $tool is not installed (the page tests run under Node)" >&2
        exit 1
    fi
done

scripts/build-web.sh

echo "==> cargo build --release (gradflow serve)"
cargo build --release --bin gradflow

echo "==> npm ci (web/tests: playwright-core, pinned in package-lock.json)"
(cd web/tests && npm ci --no-audit --no-fund)

echo "==> $("$chromium" --version 2>/dev/null || echo "$chromium")"
echo "==> npm test (web/tests)"
(cd web/tests && npm test)
