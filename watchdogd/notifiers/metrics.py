"""Prometheus metrics from pass results: an HTTP endpoint (`metrics.listen`) and/or a textfile for
node_exporter's textfile collector (`metrics.textfile`, replaced atomically after each pass).

Counters and the pass-duration histogram are updated by each pass; the gauges describe the last pass
that judged the DBs (a snapshot, so a tool or state no longer present disappears instead of going stale).
Label values are bounded: routes are named by kind, tools are neutralised like log values.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics import disable_created_metrics
from prometheus_client.registry import Collector

from watchdogd import __version__
from watchdogd.config import MetricsConfig, parse_listen
from watchdogd.models import DBReport, Outcome, Route
from watchdogd.notifiers.result import PassResult
from watchdogd.present.text import safe

PREFIX = "opencode_watchdogd"
PASS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROUTES = tuple(r for r in Route if r is not Route.UNDO)  # undo is a verb of its own, never a pass's action
OUTCOMES = (Outcome.DONE, Outcome.SKIPPED, Outcome.FAILED, Outcome.REPORTED)
DB_STATES = ("watched", "read-only", "unreadable", "missing")


class MetricsError(Exception):
    """The endpoint cannot be served (e.g. the port is taken): one line, exit 2."""


def db_state(report: DBReport) -> str:
    if report.error:
        return "missing" if not report.path.exists() else "unreadable"
    return "watched" if report.ok else "read-only"


@dataclass
class _Snapshot:
    candidates: dict[tuple[str, str], int] = field(default_factory=dict)  # (verdict, tool) -> count
    databases: dict[str, int] = field(default_factory=dict)
    live_servers: int = 0
    next_deadline: float | None = None
    last_success: float | None = None
    versions: set[str] = field(default_factory=set)  # opencode versions seen in this process's lifetime


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: _Snapshot, lock: threading.Lock, journal: Path):
        self.snapshot, self.lock, self.journal = snapshot, lock, journal

    def collect(self):
        with self.lock:
            snap = self.snapshot
            candidates = dict(snap.candidates)
            databases, servers, versions = dict(snap.databases), snap.live_servers, sorted(snap.versions)
            deadline, success = snap.next_deadline, snap.last_success
        family = GaugeMetricFamily(
            f"{PREFIX}_candidates",
            "Running/pending tool parts by verdict and tool",
            labels=["verdict", "tool"],
        )
        for (verdict, tool), count in sorted(candidates.items()):
            family.add_metric([verdict, tool], count)
        yield family
        family = GaugeMetricFamily(f"{PREFIX}_databases", "Watched opencode DBs by state", labels=["state"])
        for state in DB_STATES:
            family.add_metric([state], databases.get(state, 0))
        yield family
        yield GaugeMetricFamily(
            f"{PREFIX}_live_servers", "opencode servers the last judging pass reached", value=servers
        )
        if deadline is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_next_deadline_timestamp_seconds",
                "When the next kept candidate expires (absent: none)",
                value=deadline,
            )
        if success is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_successful_pass_timestamp_seconds",
                "When the last pass that ran to the end finished",
                value=success,
            )
        yield GaugeMetricFamily(
            f"{PREFIX}_journal_size_bytes",
            "Size of the action journal (with its WAL)",
            value=_size(self.journal),
        )
        yield InfoMetricFamily(
            f"{PREFIX}_build",
            "Version of the daemon and of the opencode servers seen",
            value={"version": __version__, "opencode_versions": ",".join(versions)},
        )


def _size(journal: Path) -> int:
    total = 0
    for path in (journal, journal.with_name(journal.name + "-wal")):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


class Metrics:
    """One registry for the daemon's lifetime (counters survive reloads); `serve` binds the endpoint."""

    def __init__(self, config: MetricsConfig, state_dir: Path):
        disable_created_metrics()  # `_created` series only double the textfile
        self.config = config
        self.log = structlog.get_logger("watchdogd.metrics")
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._snapshot = _Snapshot()
        self._told_reported: set[tuple[str, str]] = set()
        self._server = None
        self._textfile_failing = False
        self.passes = Counter(f"{PREFIX}_passes", "Passes by result", ["result"], registry=self.registry)
        self.actions = Counter(
            f"{PREFIX}_actions",
            "Actions by route and outcome (a part reported but not freed counts once)",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            f"{PREFIX}_pass_duration_seconds",
            "Duration of one pass",
            buckets=PASS_BUCKETS,
            registry=self.registry,
        )
        for result in ("ok", "failed"):
            self.passes.labels(result)
        for route in ROUTES:
            for outcome in OUTCOMES:
                self.actions.labels(
                    route.value, outcome.value
                )  # present at 0, so increase() sees the first one
        self._collector = _SnapshotCollector(self._snapshot, self._lock, state_dir / "journal.db")
        self.registry.register(self._collector)

    def serve(self) -> None:
        if self.config.listen is None:
            return
        address = parse_listen(self.config.listen)
        try:
            self._server, _thread = start_http_server(address.port, address.host, registry=self.registry)
        except OSError as exc:
            raise MetricsError(
                f"metrics.listen {self.config.listen}: cannot listen: {exc.strerror or exc}"
            ) from None
        self.log.info("serving metrics", listen=self.config.listen)

    def reconfigure(self, config: MetricsConfig, state_dir: Path) -> None:
        """After a reload: move the endpoint if `listen` changed; counters carry on.
        Raise MetricsError when the new address cannot be served (then nothing is served)."""
        self._collector.journal = state_dir / "journal.db"
        old, self.config = self.config, config
        if config.listen != old.listen or self._server is None:
            self.close()
            self.serve()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def publish(self, result: PassResult) -> None:
        self.passes.labels("ok" if result.ok else "failed").inc()
        self.duration.observe(result.duration_s)
        self._count_actions(result)
        with self._lock:
            self._update_snapshot(result)
        if self.config.textfile is not None:
            self._write_textfile(self.config.textfile)

    def _count_actions(self, result: PassResult) -> None:
        listed = {(str(r.path), a.candidate.part_id) for r in result.reports for a in r.assessments}
        if result.evaluated:
            self._told_reported &= listed
        for outcome in result.outcomes:
            if outcome.outcome not in OUTCOMES:
                continue
            key = (str(outcome.item.candidate.db), outcome.item.candidate.part_id)
            if outcome.outcome is Outcome.REPORTED:
                if key in self._told_reported:
                    continue  # reported again by a later pass: the same stuck part, not a new action
                self._told_reported.add(key)
            self.actions.labels(outcome.route.value, outcome.outcome.value).inc()

    def _update_snapshot(self, result: PassResult) -> None:
        snap = self._snapshot
        if result.ok:
            snap.last_success = result.started.timestamp() + result.duration_s
        snap.next_deadline = result.next_deadline.timestamp() if result.next_deadline else None
        snap.versions.update(s.version for s in result.servers)
        if not result.evaluated:
            return
        snap.live_servers = len(result.servers)
        snap.candidates.clear()
        snap.databases.clear()
        for report in result.reports:
            state = db_state(report)
            snap.databases[state] = snap.databases.get(state, 0) + 1
            for item in report.assessments:
                key = (item.verdict.decision.value, safe(item.candidate.tool, 60))
                snap.candidates[key] = snap.candidates.get(key, 0) + 1

    def _write_textfile(self, target: Path) -> None:
        """Atomically, world-readable (node_exporter runs as another user), whatever the umask."""
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(generate_latest(self.registry))
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            if not self._textfile_failing:
                self.log.warning(
                    "cannot write the metrics textfile; further failures are not logged",
                    path=str(target),
                    error=exc.strerror or str(exc),
                )
            self._textfile_failing = True
            return
        if self._textfile_failing:
            self.log.info("metrics textfile written again", path=str(target))
        self._textfile_failing = False
