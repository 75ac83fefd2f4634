"""The test suite's own layout: pytest imports test files by their basename (the tiers are not packages), so two
test files of one name in different tiers stop the whole run at collection ("import file mismatch"). The
landing rule runs tests/unit, so this says so before a full run does."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_file_name_is_unique_across_the_tiers():
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert sorted(name for name, count in names.items() if count > 1) == []
