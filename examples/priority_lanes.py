"""An interactive call overtakes a bulk job on one limit, and metrics show both.

A service shares one API limit (20 calls per second) between a bulk job, eight workers
of a `ratekit.Scheduler` running at `Priority.BULK`, and interactive calls that someone
is waiting for.  Without priorities, an interactive call would wait behind the eight
slots the workers keep booked and its own (0.45 s); through `ratekit.Prioritized` it
waits for at most two (100 ms): the one booked ahead, then its own, while the bulk
job keeps the rest of the limit.  `ratekit.telemetry` reports the limiter and the
scheduler to an OpenTelemetry SDK, read here with an in-memory reader (in production:
Prometheus or OTLP, see docs/operations.md).

Run it with ``python examples/priority_lanes.py`` (about 2 s; needs
``pip install 'ratekit[metrics]'`` for the SDK).
"""

from __future__ import annotations

import threading
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

import ratekit
from ratekit import Priority, telemetry


def collected(reader: InMemoryMetricReader) -> dict[str, float]:
    """Each metric's value (sums over its series; a histogram's count), by name."""
    values: dict[str, float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                total = 0.0
                for point in metric.data.data_points:
                    if isinstance(point, NumberDataPoint):
                        total += point.value
                    else:  # a histogram: how many values it holds
                        total += point.count
                values[metric.name] = total
    return values


def main() -> None:
    """Run the bulk job, make three interactive calls meanwhile, print waits and metrics."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    shared = ratekit.Prioritized(ratekit.TokenBucket(20, capacity=1))
    scheduler = ratekit.Scheduler(max_workers=8, limiter=shared)
    handles = [
        telemetry.instrument(shared, meter_provider=provider, name="crm"),
        telemetry.instrument(scheduler, meter_provider=provider, name="bulk"),
    ]

    def bulk() -> None:
        with scheduler:
            done = sum(
                1 for _ in scheduler.map(lambda item: item, range(30), priority=Priority.BULK)
            )
        print(f"bulk job: {done} calls done")

    job = threading.Thread(target=bulk)
    job.start()
    time.sleep(0.2)  # the job is under way: its workers queue on the limit
    for _ in range(3):
        started = time.monotonic()
        shared.acquire(priority=Priority.INTERACTIVE)
        print(f"interactive call waited {1000 * (time.monotonic() - started):.0f} ms")
        time.sleep(0.2)
    job.join()

    values = collected(reader)
    for name in (
        "ratekit.limiter.grants",
        "ratekit.limiter.wait.duration",
        "ratekit.scheduler.calls.completed",
    ):
        print(f"{name}: {values[name]:g}")
    for handle in handles:
        handle.close()
    provider.shutdown()


if __name__ == "__main__":
    main()
