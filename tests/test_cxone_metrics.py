"""``ratekit-cxone export --metrics-port`` and OTLP: an export watched as Prometheus would."""

from __future__ import annotations

import http.server
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from ratekit_cxone._cli import main
from ratekit_cxone.simulator import Simulator

FIRST = datetime(2026, 1, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=30)
WINDOW = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z"]
SECRETS = ("sim-client-secret", "sim-access-secret")


@pytest.fixture
def tenant(monkeypatch):
    """A simulator with *records* contacts in January 2026, CXONE_* pointing at it."""
    for name in list(os.environ):
        if name.startswith(("CXONE_", "OTEL_")):
            monkeypatch.delenv(name)
    started = []

    def start(records):
        simulator = Simulator(first_date=FIRST, span=SPAN, records=records).start()
        started.append(simulator)
        for name, value in simulator.env("contacts").items():
            monkeypatch.setenv(name, value)
        return simulator

    yield start
    for simulator in started:
        simulator.close()


def free_port():
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port):
    """The Prometheus text at the port, or ``None`` while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None


def sample(text, name):
    """The value of the first sample called *name* (labels ignored), or ``None``."""
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            return float(line.rsplit(" ", 1)[1])
    return None


def test_an_export_is_scraped_while_it_runs_and_the_endpoint_ends_with_it(tenant, tmp_path):
    """Prometheus text while the export runs: ratekit's series and the export's, no secret."""
    simulator = tenant(records=40)
    port = free_port()
    out = tmp_path / "contacts.jsonl"
    # 20 pages at 10 a second: two seconds during which the endpoint must answer.
    args = ["export", "--out", str(out), *WINDOW, "--page-size", "2", "--rate", "10/second"]
    codes = []
    run = threading.Thread(
        target=lambda: codes.append(main([*args, "--quiet", "--metrics-port", str(port)]))
    )
    run.start()
    seen = []
    while run.is_alive():
        text = scrape(port)
        if text is not None and (sample(text, "ratekit_cxone_records_total") or 0) > 0:
            seen.append(text)
        time.sleep(0.05)
    run.join()
    assert codes == [0]
    assert seen, "the endpoint never showed records while the export ran"
    text = seen[-1]
    # The limiter, the scheduler, the HTTP client and the export's progress, by name.
    for name in (
        "ratekit_limiter_grants_total",
        "ratekit_scheduler_calls_completed_total",
        "ratekit_client_requests_total",
        "ratekit_cxone_pages_total",
    ):
        assert sample(text, name) is not None, name
    assert 'cxone_api="contacts"' in text
    assert 'service_name="ratekit-cxone"' in text or "ratekit-cxone" in text
    assert not any(secret in text for secret in SECRETS)
    assert sample(text, "ratekit_cxone_records_total") <= len(
        simulator.contacts(FIRST, FIRST + SPAN)
    )
    # Once the command is over, nothing listens any more.
    assert scrape(port) is None


class _Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that keeps what it is sent."""

    received: list[tuple[str, str, bytes]]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def collector():
    """An OTLP/HTTP receiver on loopback: (server, what it received)."""
    handler = type("Handler", (_Collector,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield server, handler.received
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_otel_variables_send_the_final_counts_over_otlp(
    tenant, tmp_path, collector, monkeypatch
):
    """OTEL_EXPORTER_OTLP_ENDPOINT: the final counts arrive as OTLP protobuf, named."""
    server, received = collector
    simulator = tenant(records=30)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    out = tmp_path / "contacts.jsonl"
    assert main(["export", "--out", str(out), *WINDOW, "--rate", "1000/second", "--quiet"]) == 0
    assert received, "nothing was sent to the collector"
    path, content_type, body = received[-1]
    assert path == "/v1/metrics"
    assert content_type == "application/x-protobuf"
    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    (resource,) = request.resource_metrics
    labels = {item.key: item.value.string_value for item in resource.resource.attributes}
    assert labels["service.name"] == "ratekit-cxone"
    assert labels["deployment.environment"] == "test"
    values = {}
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            if metric.HasField("sum"):
                values[metric.name] = sum(p.as_int or p.as_double for p in metric.sum.data_points)
    # The last export happens at the end: it holds the whole run's counts.
    assert values["ratekit_cxone.records"] == len(simulator.contacts(FIRST, FIRST + SPAN))
    assert values["ratekit.limiter.grants"] >= values["ratekit_cxone.pages"] > 0
    assert not any(secret.encode() in body for secret in SECRETS)


def test_otel_sdk_disabled_sends_nothing(tenant, tmp_path, collector, monkeypatch):
    """OTEL_SDK_DISABLED=true wins over the endpoint."""
    server, received = collector
    tenant(records=5)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    out = tmp_path / "contacts.jsonl"
    assert main(["export", "--out", str(out), *WINDOW, "--rate", "1000/second", "--quiet"]) == 0
    assert received == []


def test_a_taken_metrics_port_exits_2_in_one_line_before_any_request(tenant, tmp_path, capsys):
    """A port in use is a usage error, found before the API is called."""
    simulator = tenant(records=5)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "contacts.jsonl"
        code = main(["export", "--out", str(out), *WINDOW, "--metrics-port", str(port)])
    assert code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--metrics-port" in error
    assert f"127.0.0.1:{port}" in error
    assert simulator.statistics().requests == 0
    assert not out.exists()


def test_without_the_exporters_metrics_port_says_what_to_install(
    tenant, tmp_path, capsys, monkeypatch
):
    """Without the Prometheus exporter, --metrics-port names the extra to install."""
    tenant(records=5)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.prometheus", None)
    out = tmp_path / "contacts.jsonl"
    code = main(["export", "--out", str(out), *WINDOW, "--metrics-port", str(free_port())])
    assert code == 2
    assert "ratekit[metrics]" in capsys.readouterr().err


def test_without_the_otlp_exporter_the_export_runs_and_warns(tenant, tmp_path, capsys, monkeypatch):
    """Without the OTLP exporter, the OTEL_* variables draw a warning; the export runs."""
    simulator = tenant(records=5)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.metric_exporter", None)
    out = tmp_path / "contacts.jsonl"
    assert main(["export", "--out", str(out), *WINDOW, "--rate", "1000/second", "--quiet"]) == 0
    error = capsys.readouterr().err
    assert "warning:" in error
    assert "ratekit[metrics]" in error
    assert len(out.read_text().splitlines()) == len(simulator.contacts(FIRST, FIRST + SPAN))


def test_the_help_names_the_metrics_options(capsys):
    """--help documents both options."""
    assert main(["export", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--metrics-port" in text
    assert "--metrics-host" in text
