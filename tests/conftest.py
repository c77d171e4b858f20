"""Shared pytest setup: the ``--full`` option for the slow sweeps, and their covering subset.

Tests marked ``full`` run only with ``pytest --full`` (``npugen verify --full`` passes it),
except those also marked ``covering``: that fixed subset of the sweeps runs in every run, CI
included (docs/verification.md lists it and says why it covers each family). The ``rtl``
marker labels the cocotb regression on emitted Verilog, so ``-m "not rtl"`` runs the rest.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", default=False,
                     help="also run the slow sweeps marked 'full' (default: off)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full"):
        return
    skip = pytest.mark.skip(reason="slow sweep: run with --full")
    for item in items:
        if "full" in item.keywords and "covering" not in item.keywords:
            item.add_marker(skip)
