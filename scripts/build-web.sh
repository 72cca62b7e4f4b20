#!/usr/bin/env bash
# Builds the web page's wasm (crate gradflow-web, web/Cargo.toml) and its JavaScript bindings into
# web/pkg/, which web/index.html loads; prints the .wasm's size, raw and as gzip -9 would send it.
#
#   scripts/build-web.sh
#
# Needs the wasm32-unknown-unknown target (added here when missing) and wasm-bindgen-cli of the
# exact version of the wasm-bindgen crate in Cargo.lock: the CLI and the crate share a schema
# that changes between versions, and a mismatch fails only when the page loads.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi

if [ ! -f web/Cargo.toml ]; then
    echo "build-web.sh: web/Cargo.toml (the gradflow-web crate) is missing" >&2
    exit 1
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "==> rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

# The version line that follows `name = "wasm-bindgen"` in Cargo.lock.
want="$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$want" ]; then
    echo "build-web.sh: Cargo.lock names no wasm-bindgen crate (is gradflow-web a workspace member?)" >&2
    exit 1
fi
have="$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)"
if [ "$have" != "$want" ]; then
    echo "build-web.sh: wasm-bindgen-cli ${have:-is not installed}${have:+ is installed}; Cargo.lock has wasm-bindgen $want." >&2
    echo "    install it with: cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi

echo "==> cargo build --release --target wasm32-unknown-unknown -p gradflow-web"
cargo build --release --target wasm32-unknown-unknown -p gradflow-web

wasm=target/wasm32-unknown-unknown/release/gradflow_web.wasm
echo "==> wasm-bindgen --target web --no-typescript --out-dir web/pkg $wasm"
wasm-bindgen --target web --no-typescript --out-dir web/pkg "$wasm"

# What the browser downloads is the bindgen output, not the cargo artefact.
out=web/pkg/gradflow_web_bg.wasm
raw=$(wc -c <"$out")
gz=$(gzip -9 -c "$out" | wc -c)
echo "==> $out: $raw bytes ($((raw / 1024)) KiB), gzip -9: $gz bytes ($((gz / 1024)) KiB)"
