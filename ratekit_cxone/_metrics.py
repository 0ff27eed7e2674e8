"""Metrics of a running export, for Prometheus (``--metrics-port``) or an OTLP collector.

`watching` instruments every limiter, scheduler, HTTP client and token provider that
ratekit makes while it runs (`ratekit.telemetry.instrument`), adds the export's own
progress (``ratekit_cxone.pages`` and ``ratekit_cxone.records``), and exports them:

- with a port, in the Prometheus text format at ``http://HOST:PORT/metrics``, served by
  ``prometheus_client`` on a thread that ends with the command;
- when the standard OpenTelemetry variables ask for it (``OTEL_EXPORTER_OTLP_ENDPOINT``
  or ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set, or ``OTEL_METRICS_EXPORTER``
  names ``otlp``), over OTLP/HTTP every ``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds
  and once more at the end, with the exporter reading the rest of its settings
  (headers, timeout, compression) from the same variables.

``OTEL_SDK_DISABLED=true`` turns both off.  The resource is the SDK's default, read from
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``, with ``service.name``
``ratekit-cxone`` unless those name another.  Nothing here holds a credential: the
attributes are the API's name and what ratekit itself reports.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader

    from ratekit_cxone._models import CXoneStatistics

#: What to install for the exporters.
EXTRA = "ratekit[metrics]"

#: The longest the command waits, when it ends, for the last OTLP export.
SHUTDOWN_SECONDS = 10.0


class MetricsUnavailable(Exception):
    """The packages that export metrics are not installed, or the port cannot be used."""


def otlp_requested(environ: Mapping[str, str]) -> bool:
    """Whether the OpenTelemetry variables in *environ* ask for an OTLP export."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {
        name.strip().lower() for name in environ.get("OTEL_METRICS_EXPORTER", "").split(",")
    }
    if "none" in exporters:
        return False
    return (
        "otlp" in exporters
        or bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        or bool(environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
    )


def _readers(
    port: int | None, host: str, environ: Mapping[str, str], warn: Callable[[str], None]
) -> tuple[list[MetricReader], Callable[[], None]]:
    """The SDK's readers for *port* and the OTLP variables, and how to stop the server."""
    readers: list[MetricReader] = []
    stop: Callable[[], None] = lambda: None  # noqa: E731 - nothing to stop
    if otlp_requested(environ):
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        except ImportError:
            # The variables may be set for other programs of the machine: an export is
            # not refused for them, but the user is told why nothing arrives.
            warn(f"OTEL_* variables ask for metrics over OTLP, but '{EXTRA}' is not installed")
        else:
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if port is not None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise MetricsUnavailable(f"--metrics-port needs '{EXTRA}' installed") from None
        # A registry of its own: only this command's metrics, however many runs a process
        # makes (the library's global one would keep the first run's collector).
        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
        try:
            server, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as error:
            raise MetricsUnavailable(
                f"argument --metrics-port: cannot listen on {host}:{port}: "
                f"{error.strerror or error}"
            ) from None

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join()

    return readers, stop


@contextlib.contextmanager
def watching(
    port: int | None,
    *,
    host: str,
    environ: Mapping[str, str],
    api: str,
    warn: Callable[[str], None],
) -> Iterator[MeterProvider | None]:
    """Export the metrics of what runs in the block; yield the provider (or ``None``).

    Args:
        port: Serve Prometheus' text format on this port (``None``: do not).
        host: The address the Prometheus endpoint listens on.
        environ: Where the ``OTEL_*`` variables are read.
        api: The value of the ``cxone.api`` attribute of every metric.
        warn: Reports why the OTLP variables are not acted on (one line).

    Raises:
        MetricsUnavailable: If a port is given and the Prometheus exporter is not
            installed, or the port cannot be listened on.
    """
    readers, stop = _readers(port, host, environ, warn)
    if not readers:
        yield None
        return
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    from ratekit import telemetry

    # The SDK reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES from the process's
    # environment; the command names the service only where they do not.
    resource = Resource.create()
    named = environ.get("OTEL_SERVICE_NAME") or any(
        item.partition("=")[0].strip() == SERVICE_NAME
        for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
    )
    if not named:
        resource = resource.merge(Resource({SERVICE_NAME: "ratekit-cxone"}))
    provider = MeterProvider(metric_readers=readers, resource=resource)
    attributes = {"cxone.api": api}
    everything = telemetry.instrument(meter_provider=provider, attributes=attributes)
    try:
        yield provider
    finally:
        try:
            # Shut down first: its last collection, sent over OTLP, holds the final counts.
            provider.shutdown(timeout_millis=SHUTDOWN_SECONDS * 1000)
        finally:
            everything.close()
            stop()


def track(
    provider: MeterProvider | None, statistics: Callable[[], CXoneStatistics], api: str
) -> None:
    """Report the pages and records that *statistics* counts, while *provider* lives."""
    if provider is None:
        return
    from opentelemetry.metrics import CallbackOptions, Observation

    from ratekit import __version__

    meter = provider.get_meter("ratekit_cxone", __version__)
    attributes = {"cxone.api": api}

    def pages(_options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(statistics().pages, attributes)

    def records(_options: CallbackOptions) -> Iterator[Observation]:
        yield Observation(statistics().records, attributes)

    meter.create_observable_counter(
        "ratekit_cxone.pages", [pages], unit="{page}", description="Pages fetched"
    )
    meter.create_observable_counter(
        "ratekit_cxone.records", [records], unit="{record}", description="Records fetched"
    )
