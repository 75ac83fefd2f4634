"""Shared fixtures; the real work lives in tests/support."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

# `tests.support` must import however pytest is launched (plain `pytest` does not
# put the repo root on sys.path, `python -m pytest` does).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.fake_model import FakeModel  # noqa: E402
from tests.support.opencode import PINNED_VERSIONS, OpencodeServer  # noqa: E402

CLOCK_SHIM_SOURCE = Path(__file__).parent / "reliability" / "data" / "fakeclock.c"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: needs real opencode (node, npm, opencode-ai releases)")


def require_node() -> None:
    """Skip real-opencode tests without node/npm, but never silently on CI."""
    if shutil.which("node") and shutil.which("npm"):
        return
    message = "node/npm not installed: real-opencode tests need them"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_root(why: str) -> None:
    """Skip a test that needs root (CI runs as root), but never silently on CI."""
    if os.geteuid() == 0:
        return
    message = f"needs root: {why}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def clock_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LD_PRELOAD shim that shifts CLOCK_REALTIME of one process by the int64 ns in $FAKECLOCK_FILE."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        message = "no C compiler to build the LD_PRELOAD clock shim"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("clock-shim") / "fakeclock.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(CLOCK_SHIM_SOURCE), "-ldl"], check=True
    )
    return out


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeModel]:
    with FakeModel() as model:
        yield model


@pytest.fixture(params=PINNED_VERSIONS)
def opencode_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def opencode_factory(fake_model: FakeModel, tmp_path: Path) -> Iterator[Callable[..., OpencodeServer]]:
    """`factory(version, start=True, **OpencodeServer kwargs)` -> a started server (or not yet started).

    The shared fake model's request log is cleared first, so a test sees only
    its own model traffic. Every server is stopped at teardown (SIGKILL if needed).
    """
    require_node()
    fake_model.reset()
    servers: list[OpencodeServer] = []

    def factory(version: str, *, start: bool = True, **kwargs: Any) -> OpencodeServer:
        kwargs.setdefault("model_url", fake_model.url)
        server = OpencodeServer(tmp_path / f"opencode-{len(servers)}", version=version, **kwargs)
        servers.append(server)
        return server.start() if start else server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture
def opencode_server(opencode_factory: Callable[..., OpencodeServer], opencode_version: str) -> OpencodeServer:
    """A started server for each pinned version."""
    return opencode_factory(opencode_version)
