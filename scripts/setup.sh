#!/usr/bin/env bash
# Installs what building and testing Gradebook needs, skipping whatever is
# already present at the pinned version, so it is cheap to run every time.
#   scripts/setup.sh            # everything (backend, portal tool-chain, browser tests)
#   scripts/setup.sh backend    # only what the Rust backend and its tests need
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
TRUNK_VERSION=0.21.14
# Must equal the wasm-bindgen version in Cargo.lock (pinned with `=` in Cargo.toml).
WASM_BINDGEN_VERSION=0.2.130

what=${1:-all}
log() { printf '\033[1;34msetup:\033[0m %s\n' "$*"; }

have_version() { # have_version CMD VERSION -- true when `CMD --version` mentions VERSION
  command -v "$1" >/dev/null 2>&1 && "$@" 2>/dev/null | grep -q "$2" 2>/dev/null
}

apt_install() { # apt_install PKG... -- installs the Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

cargo_tool() { # cargo_tool BIN VERSION CRATE [install flags...]
  local bin=$1 version=$2 crate=$3; shift 3
  if command -v "$bin" >/dev/null 2>&1 && "$bin" --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  log "cargo install $crate $version"
  cargo install "$crate" --version "$version" "$@"
}

backend() {
  # wrk for benchmarks, iproute2 and curl for the cross-host drill.
  apt_install wrk iproute2 curl
  # PostgreSQL (server binaries) for the persistence tests; sqlite needs nothing.
  if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt_install postgresql
  fi
}

portal() {
  rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  cargo_tool wasm-bindgen "$WASM_BINDGEN_VERSION" wasm-bindgen-cli
  cargo_tool cargo-leptos "$CARGO_LEPTOS_VERSION" cargo-leptos --locked --features no_downloads
  cargo_tool trunk "$TRUNK_VERSION" trunk --locked
  # Release wasm-opt from npm's binaryen: Debian's binaryen 108 breaks hydration.
  if [ ! -x tools/node_modules/.bin/wasm-opt ]; then
    log "npm install (binaryen, playwright-core)"
    (cd tools && npm install --no-audit --no-fund --silent)
  fi
}

browser() {
  apt_install chromium chromium-driver
  # The original Go program, for the interop tests (tests/browser/interop.test.mjs).
  apt_install golang-go
}

case "$what" in
  backend) backend ;;
  portal) portal ;;
  all) backend; portal; browser ;;
  *) echo "usage: $0 [all|backend|portal]" >&2; exit 2 ;;
esac
log "ready ($what)"
