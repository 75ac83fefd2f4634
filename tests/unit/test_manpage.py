"""The shipped man page is what man/generate.py prints for the current parser (argparse-manpage)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_cli_help import VERBS  # the verbs the help tests cover: the page documents each

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "man" / "opencode-watchdogd.1"


def generated() -> str:
    spec = importlib.util.spec_from_file_location("man_generate", ROOT / "man" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.page()


def test_the_committed_page_is_current():
    # The .TH line carries the date it was generated on; everything else must match.
    fresh, committed = generated().splitlines(), PAGE.read_text().splitlines()
    assert committed[0].startswith('.TH OPENCODE\\-WATCHDOGD "1" ')
    assert committed[1:] == fresh[1:], (
        "man page out of date: python man/generate.py > man/opencode-watchdogd.1"
    )


def test_the_page_documents_every_verb_and_the_exit_status():
    text = PAGE.read_text()
    for verb in VERBS:
        assert f".B {verb}\n" in text.replace("\\-", "-"), verb
    for heading in (".SH EXIT STATUS", ".SH ENVIRONMENT", ".SH FILES", ".SH SEE ALSO"):
        assert heading in text


def test_groff_reads_it_without_warnings():
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(
        ["groff", "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True, check=False, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "")
