#!/usr/bin/env bash
# Builds the services and the portal for release without cargo-leptos (which
# takes ~14 min to install on a new 2-core machine): the servers, the islands client
# (`hydrate`, wasm) run through wasm-bindgen and wasm-opt, and the stylesheet,
# laid out in target/site as `cargo leptos build --release` lays them out.
# `cargo leptos watch` stays the development loop (scripts/setup.sh dev).
#   scripts/build-portal.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$PATH"

# The names cargo-leptos would set (from [workspace.metadata.leptos]): the
# server finds its script and wasm by them.
export LEPTOS_OUTPUT_NAME=gradebook
site=target/site
pkg=$site/pkg

step() { printf '\033[1;34mbuild:\033[0m %s\n' "$*"; }
timed() { local started=$SECONDS; "$@"; step "  done in $((SECONDS - started)) s"; }

# One cargo invocation for both servers: they share about 60 crates (tokio,
# hyper, axum, serde…), which two invocations would compile twice, each
# with its own set of features.
step "services and portal server (cargo build --release; ~5 min on 2 cores from cold)"
timed cargo build --release --bin gradebook --bin gradebook-portal --features gradebook-frontend/ssr

step "portal client (wasm, profile wasm-release; ~1.5 min from cold)"
timed cargo build --profile wasm-release --target wasm32-unknown-unknown \
  -p gradebook-frontend --lib --no-default-features --features hydrate

step "wasm-bindgen, wasm-opt, stylesheet"
rm -rf "$pkg" && mkdir -p "$pkg"
wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name gradebook \
  target/wasm32-unknown-unknown/wasm-release/gradebook_frontend.wasm
# The page's script asks for gradebook.wasm, as cargo-leptos names it.
mv "$pkg/gradebook_bg.wasm" "$pkg/gradebook.wasm"
if command -v wasm-opt >/dev/null 2>&1; then
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int "$pkg/gradebook.wasm" -o "$pkg/gradebook.wasm"
else
  step "  wasm-opt not found (npm's binaryen, scripts/setup.sh): the wasm stays unoptimized"
fi
cp frontend/style/main.css "$pkg/gradebook.css"
step "portal ready: target/release/gradebook-portal with its site in $site ($(du -sh "$pkg" | cut -f1))"
