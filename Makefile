# The two commands that matter:
#   make up     run the whole system (installs and builds only what running needs)
#   make test   run every test (what CI runs; installs the rest)
.PHONY: up test test-rust test-browser build release setup bench fmt

# wasm-opt (and Playwright) from npm's packages: Debian's binaryen breaks hydration.
export PATH := $(CURDIR)/tools/node_modules/.bin:$(PATH)

# A hung test must fail the run, not eat CI's whole time: each test step has
# a deadline (compiling included) well above its normal length.
DEADLINE := timeout --kill-after=30s

up:
	scripts/setup.sh run
	$(MAKE) build
	target/release/gradebook up

test: setup test-rust release test-browser

setup:
	scripts/setup.sh

# Unit and system tests in Rust, beside a throwaway PostgreSQL. The system
# tests that run the whole cluster under `up` need the portal's binary.
test-rust:
	$(DEADLINE) 15m cargo build --bin gradebook-portal --features gradebook-frontend/ssr
	$(DEADLINE) 30m scripts/with-postgres.sh cargo test --workspace --exclude gradebook-frontend --no-fail-fast
	$(DEADLINE) 15m cargo test -p gradebook-frontend --features ssr

# What running needs: the services and the portal (server, islands client,
# stylesheet), without cargo-leptos.
build:
	scripts/build-portal.sh

# Everything the browser tests use: the above and the client-only app (trunk).
release: build
	trunk build --release --offline

# The portal in a real browser against the release builds, the drills, and
# the original Go program beside ours.
test-browser:
	$(DEADLINE) 20m scripts/with-postgres.sh node --test --test-concurrency=1 tests/browser/

bench: setup release
	cargo build --release -p gradebook-tests --bins
	target/release/bench

fmt:
	cargo fmt --all
