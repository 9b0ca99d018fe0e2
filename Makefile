# prognos: the two commands of the README are `make run` and `make test`.
# Both set up what is missing first (the Python venvs — ONNX Runtime and the
# trainer in ml/.venv, the deployment validators in ml/.venv-tools — and the
# release build); setup is quick when nothing changed.

CARGO ?= cargo
VENV  := ml/.venv
PY    := $(VENV)/bin/python
BIN   := target/release/prognos
CONFIG ?= config/prognos.example.toml

.PHONY: run test setup build build-tests lint test-rust test-python test-console screenshots eval bench clean

## run: set up, build, and start the embedded default (simulator -> pipeline -> API on 127.0.0.1:8080)
run: setup build
	$(BIN) run --config $(CONFIG)

## test: set up, lint, run every Rust, Python and browser test, compile (not run) the benches
# (The benches are type-checked by `lint`'s clippy --all-targets.)
test: setup lint test-rust test-python test-console

setup:
	@scripts/setup.sh

build:
	$(CARGO) build --release --bin prognos

# The binary as the test build makes it (dev-dependency features unified), so the
# Python tests after `cargo test` reuse it instead of rebuilding dependencies.
build-tests:
	$(CARGO) test --release --workspace --no-run

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

test-rust:
	$(CARGO) test --release --workspace

test-python: build-tests
	PROGNOS_BIN=$(CURDIR)/$(BIN) $(PY) -m pytest -q --durations=8 ml/tests

# The console in headless chromium against a real `prognos run` (console/tests/).
test-console: build-tests
	@scripts/setup-browser.sh
	cd console && PROGNOS_BIN=$(CURDIR)/$(BIN) node --test tests/

## screenshots: the console's main screens (phone and desktop) into docs/screenshots/
screenshots: setup build
	@scripts/setup-browser.sh
	cd console && PROGNOS_BIN=$(CURDIR)/$(BIN) PROGNOS_SCREENSHOTS=$(CURDIR)/docs/screenshots node --test tests/

## eval: the long model-quality evaluations (minutes each; not part of make test):
## a held-out simulated stretch through the whole dataflow against ground truth,
## and the pump fleets — trained on seed 101, backtested on seeds 202 and 404
## (what each part contributes, per component); the fleets are generated once
## into data/eval/pumps with NASA progpy (scripts/pump-fleets.sh)
eval: setup build
	$(CARGO) test --release --test alerts_e2e -- --ignored --nocapture
	scripts/pump-fleets.sh data/eval/pumps 101 202 404
	rm -rf data/eval/pumps/run-202 data/eval/pumps/run-404
	scripts/eval-pumps.sh data/eval/pumps/s101 data/eval/pumps/s202 data/eval/pumps/run-202
	scripts/eval-pumps.sh data/eval/pumps/s101 data/eval/pumps/s404 data/eval/pumps/run-404

## bench: run the criterion benches (minutes; not part of make test)
bench: setup
	$(CARGO) bench --workspace

clean:
	$(CARGO) clean
	rm -rf $(VENV) ml/.venv-tools data console/node_modules
