"""Regenerate tests/data from real opencode: the DB schema and real stuck rows.

    python -m tests.support.dump_opencode_data [version ...]

For each version (default: all pinned) it runs the stuck-question flow against
the fake model, then writes

* ``tests/data/opencode-<ver>.schema.sql``: every ``sqlite_master.sql`` in
  creation order, like ``sqlite3 .schema``;
* ``tests/data/opencode-<ver>.stuck-rows.json``: the running ``question`` part
  row, its assistant message row and the session row, with ``data`` decoded.
  The temp dir is replaced by ``<WORKDIR>`` (``<WORKDIR_NO_SLASH>`` in
  ``session.path``, which opencode stores relative to ``/``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.support.fake_model import FakeModel
from tests.support.opencode import PINNED_VERSIONS, OpencodeServer

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
PLACEHOLDER = "<WORKDIR>"


def compact(data: Any) -> str:
    """opencode stores JSON.stringify output; this reproduces it from the decoded form."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def row(conn, table: str, row_id: str) -> dict[str, Any]:
    found = dict(conn.execute(f"SELECT * FROM {table} WHERE id = ?", (row_id,)).fetchone())
    if "data" in found:
        raw = found["data"]
        found["data"] = json.loads(raw)
        assert compact(found["data"]) == raw, f"{table} data would not round-trip"
    return found


def dump(version: str, model: FakeModel) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        OpencodeServer(Path(tmp), model.url, version=version) as server,
    ):
        session = server.create_session()
        server.prompt_async(session["id"], "Please ask me. SCRIPT:question")
        part = server.wait_for_running_part(session["id"])
        with server.db() as conn:
            schema = [
                r[0]
                for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
            ]
            rows = {
                "opencode_version": version,
                "note": f"real rows of a stuck question; temp dir replaced by {PLACEHOLDER}",
                "part": row(conn, "part", part.part_id),
                "message": row(conn, "message", part.message_id),
                "session": row(conn, "session", session["id"]),
            }
        text = json.dumps(rows, indent=2, ensure_ascii=False).replace(str(server.base_dir), PLACEHOLDER)
        # session.path is stored relative to "/" (no leading slash).
        text = text.replace(str(server.base_dir).lstrip("/"), "<WORKDIR_NO_SLASH>")
    (DATA_DIR / f"opencode-{version}.schema.sql").write_text("".join(f"{sql};\n" for sql in schema))
    (DATA_DIR / f"opencode-{version}.stuck-rows.json").write_text(text + "\n")
    print(f"{version}: {len(schema)} schema entries, part {part.part_id}")


def main(versions: list[str]) -> None:
    DATA_DIR.mkdir(exist_ok=True)
    with FakeModel() as model:
        for version in versions or PINNED_VERSIONS:
            dump(version, model)


if __name__ == "__main__":
    main(sys.argv[1:])
