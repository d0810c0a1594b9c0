"""The store fixtures of ``tests/stores`` (``backend``, ``make``, one run per configuration of the
module's ``STORES``), for the LlamaIndex adapter's tests."""

from stores.conftest import backend, make, pytest_generate_tests  # noqa: F401
