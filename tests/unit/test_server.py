"""The HTTP client and the loopback discovery, against a fake API that answers as each opencode version does."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import contextlib

from tests.support.fake_api import FakeAPI  # noqa: E402
from watchdogd.opencode.discovery_net import (
    _decode_address,
    connect_host,
    loopback_listeners,  # noqa: E402
    parse_listeners,
)
from watchdogd.opencode.server import (
    Credentials,
    ServerClient,
    ServerError,
    describe_error,  # noqa: E402
    insecure_reason,
)

VERSIONS = ("1.15.3", "1.18.33")
DIR = "/home/user/proj"


@pytest.fixture(params=VERSIONS)
def api(request):
    with FakeAPI(request.param) as fake:
        yield fake


def client_for(api: FakeAPI, password: str | None = None, timeout: float = 10.0) -> ServerClient:
    # 10 s: the fake answers in milliseconds, but a loaded 2-core machine must never turn an answer into a timeout
    return ServerClient(api.url, Credentials("opencode", password) if password else None, timeout)


def test_health_gives_the_version(api):
    client = client_for(api)
    assert client.health() == api.version
    assert client.version == api.version


def test_busy_is_refused_with_400_on_115_and_409_on_118(api):
    api.add_session("ses_a", DIR, busy=True)
    api.add_session("ses_b", DIR, busy=False)
    client = client_for(api)
    assert client.busy_sessions(DIR) == {"ses_a": "busy"}
    assert client.probe_idle("ses_a", DIR) is False
    assert client.probe_idle("ses_b", DIR) is True
    status = {"1.15.3": 400, "1.18.33": 409}[api.version]
    assert [r for r in api.calls("POST", "unrevert")][0][1] == "/session/ses_a/unrevert"
    # the refusal itself, as the version sends it
    import httpx

    raw = httpx.post(f"{api.url}/session/ses_a/unrevert", params={"directory": DIR})
    assert raw.status_code == status


def test_every_session_call_carries_the_directory(api):
    api.add_session("ses_a", DIR, busy=True)
    client = client_for(api)
    client.busy_sessions(DIR)
    client.questions(DIR)
    client.permissions(DIR)
    client.session("ses_a", DIR)
    client.abort("ses_a", DIR)
    client.probe_idle("ses_a", DIR)
    calls = [r for r in api.calls() if r[1] != "/global/health"]
    assert calls and all(query.get("directory") == DIR for _m, _p, query, _h in calls)


def test_wrong_directory_sees_nothing(api):
    api.add_session("ses_a", DIR, busy=True)
    assert client_for(api).busy_sessions("/elsewhere") == {}


def test_unknown_route_html_is_route_missing(api):
    api.mode = "html"
    with pytest.raises(ServerError) as err:
        client_for(api).busy_sessions(DIR)
    assert err.value.kind == "route-missing"


def test_reject_of_unknown_question_is_not_an_error_on_either_version(api):
    # 1.15 says 200 true, 1.18 says 404: neither proves anything, and neither is a failure.
    client_for(api).reject_question("que_unknown", DIR)


@pytest.mark.parametrize("mode,kind", [("garbage", "bad-answer"), ("500", "http"), ("html", "route-missing")])
def test_broken_answers_raise_typed_errors(api, mode, kind):
    api.mode = mode
    with pytest.raises(ServerError) as err:
        client_for(api).health()
    assert err.value.kind == kind


def test_a_hanging_server_times_out(api):
    api.mode = "hang"  # no answer until the server closes
    client = client_for(api, timeout=0.3)
    with pytest.raises(ServerError) as err:
        client.busy_sessions(DIR)
    assert err.value.kind == "timeout"


def test_nothing_listening_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerError) as err:
        ServerClient(f"http://127.0.0.1:{port}", timeout=1).health()
    assert err.value.kind == "unreachable"


def test_auth_needed_names_the_setting_and_credentials_work():
    with FakeAPI("1.18.33", password="s3cret") as api:
        with pytest.raises(ServerError) as err:
            client_for(api).health()
        assert err.value.kind == "auth"
        message = describe_error(err.value, api.url)
        assert "OPENCODE_SERVER_PASSWORD" in message and "password_file" in message
        assert client_for(api, password="s3cret").health() == "1.18.33"


def test_credentials_never_show_in_repr_or_errors():
    creds = Credentials("opencode", "hunter2")
    assert "hunter2" not in repr(creds)
    client = ServerClient("http://127.0.0.1:9", creds, timeout=0.5)
    assert "hunter2" not in repr(client)
    with pytest.raises(ServerError) as err:
        client.health()
    assert "hunter2" not in str(err.value)


def test_redirects_are_not_followed(api):
    # A redirect could send the Authorization header elsewhere: it is an error, never followed.
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "http://evil.invalid/"})

    client = ServerClient(
        "http://127.0.0.1:1", Credentials("opencode", "x"), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ServerError) as err:
        client.health()
    assert err.value.kind == "http"


def test_proxies_from_the_environment_are_ignored(api, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    assert client_for(api).health() == api.version


def test_patch_part_sends_the_ids_with_the_part(api):
    client_for(api).patch_part("ses_a", "msg_a", "prt_a", {"type": "tool", "state": {"status": "error"}}, DIR)
    [(_m, path, query, _h)] = api.calls("PATCH")
    assert path == "/session/ses_a/message/msg_a/part/prt_a" and query == {"directory": DIR}


@pytest.mark.parametrize(
    "url,allowed,refused",
    [
        ("http://127.0.0.1:4096", False, False),
        ("http://localhost:4096", False, False),
        ("http://[::1]:4096", False, False),
        ("https://box.example:4096", False, False),
        ("http://box.example:4096", False, True),
        ("http://box.example:4096", True, False),
        ("http://10.0.0.5:4096", False, True),
    ],
)
def test_plain_http_to_a_remote_host_needs_the_opt_in(url, allowed, refused):
    assert (insecure_reason(url, allowed) is not None) is refused


# -- discovery over /proc ---------------------------------------------------------------------

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1000 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 00000000:1001 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112 1 0 100 0 0 10 0
   2: 0500000A:1002 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 113 1 0 100 0 0 10 0
   3: 0100007F:1003 0100007F:9999 01 00000000:00000000 00:00000000 00000000     0        0 114 1 0 100 0 0 10 0
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1004 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 115 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1005 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 116 1 0 100 0 0 10 0
"""  # noqa: E501 (verbatim /proc/net/tcp6)


def test_parse_listeners_keeps_loopback_and_wildcard_listens_only():
    assert parse_listeners(TCP) == {111: ("127.0.0.1", 4096, 0), 112: ("127.0.0.1", 4097, 0)}
    assert parse_listeners(TCP6) == {115: ("[::1]", 4100, 0), 116: ("127.0.0.1", 4101, 0)}
    assert connect_host(_decode_address("0500000A")) is None  # 10.0.0.5: not via loopback


def test_loopback_listeners_from_a_fake_proc(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    (tmp_path / "net" / "tcp6").write_text(TCP6)
    fd = tmp_path / "42" / "fd"
    fd.mkdir(parents=True)
    for n, target in enumerate(
        ["socket:[111]", "socket:[113]", "socket:[116]", "/tmp/opencode.db", "pipe:[7]"]
    ):
        (fd / str(n)).symlink_to(target)
    assert loopback_listeners([42, 43], tmp_path) == {
        42: [("127.0.0.1", 4096, 0), ("127.0.0.1", 4101, 0)],
        43: [],
    }


def test_loopback_listeners_finds_a_real_socket_of_this_process():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        import os

        assert ("127.0.0.1", port, os.getuid()) in loopback_listeners([os.getpid()])[os.getpid()]


def test_an_answer_larger_than_the_cap_is_refused_not_buffered(monkeypatch):
    """A lying server cannot fill the daemon's memory: the body is read only up to MAX_BODY."""
    import http.server
    import threading

    from watchdogd.opencode import server as server_mod

    monkeypatch.setattr(server_mod, "MAX_BODY", 64 * 1024)

    class Huge(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b"[" + b'"x",' * 200_000 + b'"x"]')

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    httpd.handle_error = lambda *args: None  # the client hangs up mid-body: that is the point
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        client = server_mod.ServerClient(f"http://127.0.0.1:{httpd.server_address[1]}", timeout=5)
        with pytest.raises(server_mod.ServerError) as caught:
            client.questions("/tmp")
        assert caught.value.kind == "bad-answer" and "larger than" in str(caught.value)
    finally:
        httpd.shutdown()
