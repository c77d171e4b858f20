"""Shared pytest setup: the ``--full`` option for the slow sweeps.

Tests marked ``full`` run only with ``pytest --full`` (``npugen verify --full`` passes it); the
``rtl`` marker labels the cocotb regression on emitted Verilog, so ``-m "not rtl"`` runs the rest.
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
        if "full" in item.keywords:
            item.add_marker(skip)
