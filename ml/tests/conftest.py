"""Shared fixtures: the prognos binary and the repository root."""

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prognos_bin() -> pathlib.Path:
    """The release binary `make test` builds (PROGNOS_BIN overrides)."""
    path = pathlib.Path(os.environ.get("PROGNOS_BIN", ROOT / "target/release/prognos"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `make build` (make test does it for you)")
    return path


@pytest.fixture(scope="session")
def example_config() -> pathlib.Path:
    return ROOT / "config/prognos.example.toml"
