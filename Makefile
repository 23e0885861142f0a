# taskfleet — the two commands that matter are `make dev` and `make test`.
.PHONY: dev test build lint fmt clean

## Run the whole fleet locally: emulator, the six functions, example external service.
dev:
	@bash scripts/dev.sh

## Install what is needed and run every check and test (what CI runs).
test:
	@bash scripts/test.sh

build:
	cargo build --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
	rm -rf .venv
