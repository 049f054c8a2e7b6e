#!/usr/bin/env bash
# Installs what building, running and testing Gradebook needs, skipping
# whatever is already present at the pinned version, so it is cheap to run
# every time. Says what it installs and roughly how long that takes on a new
# 2-core machine.
#   scripts/setup.sh run    # what `make up` needs: the wasm target, wasm-bindgen-cli, npm's binaryen
#   scripts/setup.sh        # all that `make test` needs too: PostgreSQL, wrk, trunk, Chromium, Go
#   scripts/setup.sh dev    # cargo-leptos, for `cargo leptos watch`
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.10
TRUNK_VERSION=0.21.14
# Must equal the wasm-bindgen version in Cargo.lock (pinned with `=` in Cargo.toml).
WASM_BINDGEN_VERSION=0.2.130

what=${1:-all}
log() { printf '\033[1;34msetup:\033[0m %s\n' "$*"; }

apt_updated=
apt_install() { # apt_install PKG... -- installs the Debian packages that are missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]} (about a minute)"
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

cargo_tool() { # cargo_tool BIN VERSION CRATE MINUTES [install flags...]
  local bin=$1 version=$2 crate=$3 minutes=$4; shift 4
  if command -v "$bin" >/dev/null 2>&1 && "$bin" --version 2>/dev/null | grep -q "$version"; then
    return 0
  fi
  log "cargo install $crate $version (about $minutes min on 2 cores; once per machine)"
  local started=$SECONDS
  cargo install "$crate" --version "$version" "$@"
  log "  $crate installed in $(((SECONDS - started) / 60)) min"
}

run() {
  rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  cargo_tool wasm-bindgen "$WASM_BINDGEN_VERSION" wasm-bindgen-cli 2
  # Release wasm-opt from npm's binaryen: Debian's binaryen 108 breaks hydration.
  if [ ! -x tools/node_modules/.bin/wasm-opt ]; then
    log "npm install (binaryen, playwright-core; under a minute)"
    (cd tools && npm install --no-audit --no-fund --silent)
  fi
}

tests() {
  # wrk for benchmarks, iproute2 and curl for the cross-host drill.
  apt_install wrk iproute2 curl
  # PostgreSQL (server binaries) for the persistence tests; sqlite needs nothing.
  if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    apt_install postgresql
  fi
  # The client-only build (trunk) is tested in the browser too.
  cargo_tool trunk "$TRUNK_VERSION" trunk 8 --locked
  # Browser tests, and the original Go program for the interop tests.
  apt_install chromium chromium-driver golang-go
}

dev() {
  cargo_tool cargo-leptos "$CARGO_LEPTOS_VERSION" cargo-leptos 14 --locked --features no_downloads
  cargo_tool trunk "$TRUNK_VERSION" trunk 8 --locked
}

case "$what" in
  run) run ;;
  all) run; tests ;;
  dev) run; dev ;;
  *) echo "usage: $0 [run|all|dev]" >&2; exit 2 ;;
esac
log "ready ($what)"
