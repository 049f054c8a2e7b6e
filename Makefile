# The two commands that matter:
#   make up     run the whole system (installs what it needs first)
#   make test   run every test (what CI runs)
.PHONY: up test test-rust test-browser release setup bench fmt

# wasm-opt (and Playwright) from npm's packages: Debian's binaryen breaks hydration.
export PATH := $(CURDIR)/tools/node_modules/.bin:$(PATH)

# A hung test must fail the run, not eat CI's whole time: each test step has
# a deadline (compiling included) well above its normal length.
DEADLINE := timeout --kill-after=30s

up: setup release
	target/release/gradebook up

test: setup test-rust release test-browser

setup:
	scripts/setup.sh

# Unit and system tests in Rust, beside a throwaway PostgreSQL.
test-rust:
	$(DEADLINE) 30m scripts/with-postgres.sh cargo test --workspace --exclude gradebook-frontend --no-fail-fast
	$(DEADLINE) 15m cargo test -p gradebook-frontend --features ssr

# The release builds: the portal (server + hydrating wasm) with cargo leptos,
# the services, and the client-only app with trunk.
release:
	cargo leptos build --release
	cargo build --release --bin gradebook
	trunk build --release --offline

# The portal in a real browser against the release builds, and the drill of
# killing one of two grading instances (PostgreSQL) under page load.
test-browser:
	$(DEADLINE) 15m scripts/with-postgres.sh node --test --test-concurrency=1 tests/browser/

bench: setup release
	cargo build --release -p gradebook-tests --bins
	target/release/bench

fmt:
	cargo fmt --all
