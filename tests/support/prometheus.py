"""Reading the daemon's metrics in tests: scrape over HTTP, parse with prometheus_client's own parser."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels) -> float | None:
    return found.get((name, frozenset(labels.items())))


def scrape(url: str) -> dict:
    response = httpx.get(url, timeout=5)
    assert response.status_code == 200
    return samples(response.text)


def scraped(url: str) -> dict | None:
    """The samples, or None while nothing listens there."""
    try:
        return scrape(url)
    except httpx.TransportError:
        return None
