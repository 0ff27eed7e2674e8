"""A real Redis Cluster of three primaries on free loopback ports, for the cluster tests.

`RedisCluster` starts three ``redis-server`` processes in cluster mode, joins them with
``redis-cli --cluster create`` (no replicas) and waits until every node reports
``cluster_state:ok``.  A node can be restarted on its port with its cluster
configuration and without its data or functions, as after a crash of a server without
persistence, and a slot can be moved from one primary to another, as a resharding does.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from redis_server import START_TIMEOUT, _ping, redis_server_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: How many primaries the cluster has.
PRIMARIES = 3

#: A node's cluster bus listens on its port plus this, which must be a port too.
BUS_OFFSET = 10000


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(taken: set[int]) -> int:
    """A port on 127.0.0.1 that is free, and whose cluster bus port is free too.

    Drawn below the usual ephemeral range (and low enough for its bus port to exist),
    so that outgoing connections are unlikely to take it meanwhile.
    """
    for _ in range(1000):
        port = random.randrange(20000, 30000)
        if not ({port, port + BUS_OFFSET} & taken) and _free(port) and _free(port + BUS_OFFSET):
            taken.update({port, port + BUS_OFFSET})
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def redis_cli_path() -> str:
    """The ``redis-cli`` executable (Debian's redis-server package brings it)."""
    redis_server_path()  # skips (or fails under CI=true) without a server
    path = shutil.which("redis-cli")
    if path is None:
        raise RuntimeError("redis-cli is not on PATH, beside redis-server")
    return path


class RedisCluster:
    """Three ``redis-server`` primaries on 127.0.0.1, joined in one cluster."""

    def __init__(self) -> None:
        self.executable = redis_server_path()
        self.cli = redis_cli_path()
        taken: set[int] = set()
        self.ports = [free_cluster_port(taken) for _ in range(PRIMARIES)]
        self.directory = Path(tempfile.mkdtemp(prefix="ratekit-cluster-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """The URL of one node, from which a client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (close it after use)."""
        return redis.Redis(port=port, socket_timeout=5, socket_connect_timeout=5)

    def start_node(self, port: int) -> None:
        """Start the node of *port* (with its cluster configuration, if it has one)."""
        self.processes[port] = subprocess.Popen(  # noqa: S603 - a fixed executable and arguments
            [
                self.executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.directory / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(port):
            if self.processes[port].poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.processes[port].returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT} s")
            time.sleep(0.01)

    def stop_node(self, port: int) -> None:
        """Kill the node of *port*, and wait until it has exited."""
        process = self.processes.pop(port, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=START_TIMEOUT)

    def start(self) -> None:
        """Start the nodes, create the cluster and wait until it is ok everywhere."""
        for port in self.ports:
            self.start_node(port)
        subprocess.run(  # noqa: S603 - a fixed executable and arguments
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=START_TIMEOUT,
        )
        self.wait_ok()

    def wait_ok(self) -> None:
        """Wait until every node says ``cluster_state:ok`` and knows every primary."""
        deadline = time.monotonic() + START_TIMEOUT
        while not all(self._ok(port) for port in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster was not ok within {START_TIMEOUT} s")
            time.sleep(0.05)

    def _ok(self, port: int) -> bool:
        client = self.node(port)
        try:
            info = client.cluster("info")
            nodes = client.cluster("nodes")
        except redis.RedisError:
            return False
        finally:
            client.close()
        primaries = sum(1 for node in nodes.values() if "master" in node["flags"])
        return info.get("cluster_state") == "ok" and primaries == PRIMARIES

    def restart_node(self, port: int) -> None:
        """Kill a node and start it again: same slots, no data, no functions."""
        self.stop_node(port)
        self.start_node(port)
        self.wait_ok()

    def node_id(self, port: int) -> str:
        """The cluster's id of the node of *port*."""
        client = self.node(port)
        try:
            return str(client.execute_command("CLUSTER", "MYID").decode())
        finally:
            client.close()

    def owner(self, slot: int) -> int:
        """The port of the primary that serves *slot*."""
        client = self.node(self.ports[0])
        try:
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return int(primary[1])
        finally:
            client.close()
        raise LookupError(f"no node serves slot {slot}")

    def move_slot(self, slot: int, target: int, midway: Callable[[], None] | None = None) -> None:
        """Move *slot*, with its keys, to the primary of port *target*.

        The steps of a resharding: ``SETSLOT IMPORTING`` on the target, ``MIGRATING`` on
        the source, ``MIGRATE`` of every key, then ``SETSLOT NODE`` on both (and on the
        third node, so that every node redirects at once).  *midway* runs once the keys
        have moved and before the slot has: the source answers ``ASK`` meanwhile.
        """
        source = self.owner(slot)
        if source == target:
            return
        source_id, target_id = self.node_id(source), self.node_id(target)
        clients = {port: self.node(port) for port in self.ports}
        try:
            clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := clients[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                clients[source].execute_command(
                    "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys
                )
            if midway is not None:
                midway()
            for port in (target, source, *(p for p in self.ports if p not in {source, target})):
                clients[port].execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        finally:
            for client in clients.values():
                client.close()
        self.wait_ok()

    def close(self) -> None:
        """Stop every node and remove their directory."""
        for port in list(self.processes):
            with contextlib.suppress(Exception):
                self.stop_node(port)
        shutil.rmtree(self.directory, ignore_errors=True)


def serve_cluster() -> Iterator[RedisCluster]:
    """Yield a started cluster, and stop it afterwards (the body of a fixture)."""
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- a worker for the multiprocess test (run in spawned children) ---------------------------


def composition_worker(  # noqa: PLR0913, PLR0917 - a child's whole brief, passed by multiprocessing
    url: str,
    group: str,
    limits: list[tuple[float, float]],
    duration: float,
    mode: str,
    barrier: object,
    results: object,
) -> None:
    """Use one composition of sliding windows in *group* for *duration* s; report the grants.

    Each grant is reported as ``(instant, uncertainty)``, as `redis_server.share_worker`
    reports them: the local end of its round trip (plus the booked delay), which the
    server's decision precedes by at most the uncertainty.  Instants are read from the
    wall clock, which the nodes (on this host) decide on: where it runs at another rate
    than the monotonic clock (a clock being slewed), the monotonic clock would show a
    second of the servers' as longer or shorter than it is.
    """
    from ratekit.stores._redis import RedisStore

    real = time.time
    grants: list[tuple[float, float]] = []
    with RedisStore(url=url, cluster=True, timeout=5.0) as store:
        members = [
            store.sliding_window(f"{group}:{index}", limit, window, group=group)
            for index, (limit, window) in enumerate(limits)
        ]
        limiter = store.all_of(*members)
        limiter.statistics()  # connect (and load the library) before the start
        barrier.wait()  # type: ignore[attr-defined]
        start = real()
        while real() - start < duration:
            sent = real()
            if mode == "reserve":
                reservation = limiter.reserve()
                received = real()
                grants.append((received + reservation.delay, received - sent))
                store.clock.sleep(reservation.delay)
            else:
                decision = limiter.try_acquire()
                received = real()
                if decision:
                    grants.append((received, received - sent))
                else:
                    store.clock.sleep(decision.retry_after)
    results.put(grants)  # type: ignore[attr-defined]
