# The two commands that matter:
#   make up     run the whole system (installs what it needs first)
#   make test   run every test (what CI runs)
.PHONY: up test setup bench fmt

up:
	scripts/setup.sh backend
	cargo run --release --bin gradebook -- up

test:
	scripts/setup.sh backend
	scripts/with-postgres.sh cargo test --workspace --no-fail-fast

bench:
	scripts/setup.sh backend
	cargo run --release -p gradebook-tests --bin bench

fmt:
	cargo fmt --all
