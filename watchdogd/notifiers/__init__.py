"""What the daemon tells outside the journal, after each pass: desktop notifications and Prometheus metrics.

Both read only the pass result (`result.PassResult`); neither can fail or slow a pass: desktop delivery
runs on its own thread, metrics only update in-memory values (and rewrite a small textfile).
"""

from __future__ import annotations

import structlog

from watchdogd.config import Settings
from watchdogd.notifiers.desktop import DesktopNotifier, session_bus_address
from watchdogd.notifiers.metrics import Metrics, MetricsError
from watchdogd.notifiers.notices import events
from watchdogd.notifiers.result import PassResult, ServerSeen

__all__ = ["MetricsError", "PassResult", "Publishers", "ServerSeen"]


def desktop_for(settings: Settings) -> DesktopNotifier | None:
    """`notify.desktop`: auto = on when the environment names a session bus; true = on (a missing bus is
    logged once); false = off."""
    wanted = settings.notify.desktop
    if wanted is False:
        return None
    address = session_bus_address()
    if address is None:
        if wanted is True:
            structlog.get_logger("watchdogd.desktop").warning(
                "notify.desktop = true but no session bus (DBUS_SESSION_BUS_ADDRESS unset): no desktop notifications"
            )
        return None
    return DesktopNotifier(address)


class Publishers:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.desktop = desktop_for(settings)
        self.metrics = Metrics(settings.metrics, settings.state_dir) if _metrics_wanted(settings) else None
        self._told: set[tuple[str, str]] = set()  # stuck parts already told about

    def start(self) -> None:
        """Bind the metrics endpoint; raise MetricsError (one line) when it cannot be served."""
        if self.metrics is not None:
            self.metrics.serve()

    def publish(self, result: PassResult) -> None:
        if self.desktop is not None:
            found = events(result, self.settings.notify.orphans, self._told)
            if found:
                self.desktop.submit(found)
        if self.metrics is not None:
            self.metrics.publish(result)

    def reconfigure(self, settings: Settings) -> None:
        """After a reload: rebuild what changed; metric counters carry on (the endpoint moves if asked)."""
        old, self.settings = self.settings, settings
        if settings.notify.desktop != old.notify.desktop:
            if self.desktop is not None:
                self.desktop.close()
            self.desktop = desktop_for(settings)
        if not _metrics_wanted(settings):
            if self.metrics is not None:
                self.metrics.close()
            self.metrics = None
            return
        try:
            if self.metrics is None:
                self.metrics = Metrics(settings.metrics, settings.state_dir)
                self.metrics.serve()
            elif settings.metrics != old.metrics or settings.state_dir != old.state_dir:
                self.metrics.reconfigure(settings.metrics, settings.state_dir)
        except MetricsError as exc:
            structlog.get_logger("watchdogd.metrics").error("metrics not served after reload", error=str(exc))

    def close(self) -> None:
        if self.desktop is not None:
            self.desktop.close()
        if self.metrics is not None:
            self.metrics.close()


def _metrics_wanted(settings: Settings) -> bool:
    return settings.metrics.listen is not None or settings.metrics.textfile is not None
