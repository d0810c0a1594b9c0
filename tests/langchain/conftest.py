"""LangChain's standard suites have bare ``async def`` tests. Mark them for pytest-asyncio in this folder
only, instead of switching the whole run to asyncio_mode=auto."""

import inspect

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if name.startswith("test") and inspect.iscoroutinefunction(obj):
        pytest.mark.asyncio(obj)  # adds the mark to the function; collection then goes on as usual
