# taskfleet — the two commands that matter are `make dev` and `make test`.
.PHONY: dev test build lint fmt clean bench load

## Run the whole fleet locally: emulator, the seven functions, example external service.
dev:
	@bash scripts/dev.sh

## A game day against a running `make dev`: clients, and the external service failing on demand
## (LOAD_REFUSE_RATIO=1 LOAD_FAIL_AFTER=60 …; README, operations: drills).
load:
	@bash scripts/load.sh

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

## Benchmarks of issue 6 (Rust fleet vs the Python baseline) → bench/RESULTS.md.
bench:
	@bash scripts/bench.sh

.PHONY: package deploy

## Build the Lambda zips (arm64 and x86_64), package serverless.yml offline, lint the template.
package:
	@bash scripts/package.sh

## Deploy to AWS (needs credentials): make deploy STAGE=prod [ARCH=x86_64] [REGION=eu-west-1]
deploy:
	@STAGE="$(STAGE)" ARCH="$(ARCH)" REGION="$(REGION)" bash scripts/deploy.sh
