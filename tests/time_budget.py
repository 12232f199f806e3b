"""A per-test time budget: `pytest --time-budget 90` fails every test whose setup + call took longer than 90 s,
so a slow test is noticed by the change that adds it. A test that is allowed more is listed in pyproject.toml's
`time_budget_exceptions` ("<node id> <seconds> <reason>", one per line) with its reason.

Setup counts because the expensive part of a test is often a fixture (a trained proxy, a finished run folder)
built by the first test that asks for it. Without `--time-budget` nothing is checked (the edit loop on a loaded
machine is not a timing run); `make test` passes it.
"""

from __future__ import annotations

import pytest

SETUP_KEY = pytest.StashKey[float]()
EXCEPTIONS_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--time-budget", type=float, default=None, metavar="SECONDS",
                     help="fail any test whose setup + call takes longer (listed exceptions excepted)")
    parser.addini("time_budget_exceptions", type="linelist", default=[],
                  help="'<node id> <seconds> <reason>' lines: tests allowed more than --time-budget")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[EXCEPTIONS_KEY] = exceptions(config)  # parsed once; a malformed line stops the session at once


def exceptions(config: pytest.Config) -> dict[str, float]:
    """Node id -> its own budget in seconds, from the ini lines.

    Raises:
        pytest.UsageError: a line without a node id, a number of seconds and a reason.
    """
    out = {}
    for line in config.getini("time_budget_exceptions"):
        parts = line.split(maxsplit=2)
        if len(parts) < 3:
            raise pytest.UsageError(f"time_budget_exceptions: {line!r} needs '<node id> <seconds> <reason>'")
        try:
            out[parts[0]] = float(parts[1])
        except ValueError:
            raise pytest.UsageError(f"time_budget_exceptions: {parts[1]!r} in {line!r} is not a number") from None
    return out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    budget = item.config.getoption("time_budget")
    if budget is None:
        return
    report = outcome.get_result()
    if call.when == "setup":
        item.stash[SETUP_KEY] = call.duration
        return
    if call.when != "call" or not report.passed:
        return
    limit = item.config.stash[EXCEPTIONS_KEY].get(item.nodeid, budget)
    spent = item.stash.get(SETUP_KEY, 0.0) + call.duration
    if spent > limit:
        report.outcome = "failed"
        report.longrepr = (f"time budget: {spent:.1f} s (setup + call) > {limit:.0f} s; make the test smaller, or "
                           f"list it with its reason in pyproject.toml's time_budget_exceptions")
