"""Polars' jemalloc gets the collector's settings when the package is imported first, and only then."""

from __future__ import annotations

import os
import subprocess
import sys

from heapster_columnar._allocator import JEMALLOC_SETTINGS, JEMALLOC_VARIABLE


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != JEMALLOC_VARIABLE}
    result = subprocess.run(
        [sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout.strip() + result.stderr.strip()


def test_importing_the_package_configures_polars_allocator() -> None:
    # Polars puts its own pairs first; jemalloc takes the last value of each option
    code = f"import heapster_columnar, os, polars; print(os.environ['{JEMALLOC_VARIABLE}'])"
    assert _run(code).endswith("," + JEMALLOC_SETTINGS)


def test_the_settings_are_valid_for_jemalloc() -> None:
    # jemalloc complains on stderr about any pair it does not understand ("Invalid conf pair")
    code = "import heapster_columnar, polars as pl; print(pl.DataFrame({'a': list(range(10**6))}).height)"
    assert _run(code) == "1000000"


def test_a_user_choice_wins() -> None:
    code = f"import heapster_columnar, os; print(os.environ['{JEMALLOC_VARIABLE}'])"
    assert _run(code, **{JEMALLOC_VARIABLE: "dirty_decay_ms:0"}) == "dirty_decay_ms:0"
    code = "import heapster_columnar._allocator as a; print(a.configure())"
    assert _run(code, **{JEMALLOC_VARIABLE: "dirty_decay_ms:0"}) == "False"


def test_too_late_after_polars_is_loaded() -> None:
    code = "import polars, heapster_columnar._allocator as a; print(a.configure())"
    assert _run(code) == "False"
    code = "import heapster_columnar._allocator as a; print(a.configure())"  # (the package imported it already)
    assert _run(code) == "False"
