"""What `RedisStore` and `AsyncRedisStore` do differently on a Redis Cluster: keys, slots, nodes.

A cluster runs a script or a function on one node, with keys of one hash slot only, so
every key that one call names carries the same hash tag (the text between the first
``{`` and the next ``}``, which alone decides the slot; see the cluster specification,
"Hash tags").  The store writes the tags itself: a limit's keys are
``prefix{group}:key:kind`` (``prefix{key}:kind`` when the group is the key, as it is by
default), so one limiter's keys always share a slot and different limits spread over
the primaries, and a composition is refused unless its members share a group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ratekit._redact import redact_url

if TYPE_CHECKING:
    import redis.asyncio.cluster
    from redis.cluster import ClusterNode, RedisCluster

    #: A cluster client of either kind, and one of its nodes.
    AnyCluster = RedisCluster | redis.asyncio.cluster.RedisCluster
    AnyNode = ClusterNode | redis.asyncio.cluster.ClusterNode

__all__ = [
    "check",
    "connect",
    "describe",
    "hash_tag",
    "is_cluster",
    "load_targets",
    "node_of",
    "outages",
]


def hash_tag(text: str) -> str:
    """*text* as the content of a hash tag: ``%`` and ``}`` percent-encoded.

    A ``}`` would end the tag early (so that different groups would share a slot, or an
    empty tag would hash the whole key); encoding it keeps the tag exactly the group,
    and the encoding is one to one.
    """
    return text.replace("%", "%25").replace("}", "%7D")


def is_cluster(client: object, *, asyncio: bool = False) -> bool:
    """Whether *client* is a `redis.cluster.RedisCluster` (without importing it before).

    With *asyncio*: whether it is a `redis.asyncio.cluster.RedisCluster`.
    """
    if asyncio:
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        return isinstance(client, AsyncCluster)
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def check(  # noqa: PLR0913 - what a store was given, and what it is called
    store: str,
    client: object,
    url: object,
    cluster: bool | None,
    prefix: str,
    *,
    asyncio: bool = False,
) -> bool:
    """Check a store's arguments, and tell whether it holds its limits on a cluster.

    Args:
        store: The store's class name, for the messages.
        client: The client given, or ``None``.
        url: The URL given, or ``None``.
        cluster: The ``cluster`` argument given: with *url*, whether it names a node
            of a cluster; with *client*, ``None`` or what its class says.
        prefix: The key prefix given.
        asyncio: Whether the store takes `redis.asyncio` clients.

    Raises:
        ValueError: If neither or both of *client* and *url* are given, *cluster*
            contradicts the client's class, or a cluster's *prefix* holds a ``{``.
        TypeError: If *url* is not a str.
    """
    if (client is None) == (url is None):
        raise ValueError(f"{store} needs exactly one of client or url")
    if url is not None and not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    if url is not None:
        on_cluster = bool(cluster)
    else:
        on_cluster = is_cluster(client, asyncio=asyncio)
        if cluster is not None and bool(cluster) != on_cluster:
            raise ValueError(
                f"cluster={cluster!r} does not match the client, a {type(client).__name__}: "
                "leave cluster out with a client (its class tells)"
            )
    if on_cluster and "{" in prefix:
        raise ValueError(
            f"prefix must not contain '{{' on a Redis Cluster, got {prefix!r}: the store "
            "puts each limit's hash tag after the prefix"
        )
    return on_cluster


def connect(
    url: str, timeout: float, *, asyncio: bool = False, max_connections: int | None = None
) -> AnyCluster:
    """A cluster client for *url* (any one node), which discovers the others.

    The sync client reads the cluster's layout at once; the asyncio client
    (*asyncio*), on its first call.

    Args:
        url: A Redis URL of any one node.
        timeout: Seconds to wait for a connection and for each answer.
        asyncio: Make a `redis.asyncio.cluster.RedisCluster`.
        max_connections: The most connections to open to each node (``None``: the
            client's default).

    Raises:
        ValueError: If *url* is not a Redis URL.
        redis.exceptions.RedisClusterException: If no node can be reached (sync only).
    """
    import redis as redis_module
    from redis.backoff import NoBackoff

    if asyncio:
        from redis.asyncio.cluster import RedisCluster as AsyncCluster
        from redis.asyncio.retry import Retry as AsyncRetry

        make: type[AnyCluster] = AsyncCluster
        retry: object = AsyncRetry(NoBackoff(), 1, (redis_module.ConnectionError,))
    else:
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        make = RedisCluster
        retry = Retry(NoBackoff(), 1, (redis_module.ConnectionError,))
    options: dict[str, object] = {}
    if max_connections is not None:
        options["max_connections"] = max_connections
    try:
        return make.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry after a failed node (a failover, a restart), on the
            # topology as refreshed by the failure; redis-py follows MOVED and ASK
            # redirections by itself.
            retry=retry,
            **options,
        )
    except ValueError:
        raise ValueError(
            f"url must be a Redis URL (redis:// or rediss://), got {redact_url(url)!r}"
        ) from None


def outages() -> tuple[type[BaseException], ...]:
    """The errors of a cluster client that mean: the cluster cannot be reached.

    ``ClusterError`` is redis-py's "TTL exhausted" after redirections and retries that
    led nowhere; ``RedisClusterException`` covers a topology that could not be read or
    a slot that no node serves.  (Its other uses, keys of several slots in one call,
    cannot arise: every call's keys carry one hash tag.)
    """
    from redis.exceptions import ClusterError, RedisClusterException

    return (ClusterError, RedisClusterException)


def describe(client: AnyCluster) -> tuple[str, tuple[str, ...]]:
    """Name a cluster by its startup nodes, and list the secrets to keep out of messages."""
    manager = client.nodes_manager
    kwargs: dict[str, object] = dict(getattr(manager, "connection_kwargs", {}) or {})
    secrets = tuple(
        str(kwargs[name])
        for name in ("password", "username")
        if isinstance(kwargs.get(name), str) and kwargs[name]
    )
    names = sorted(str(name) for name in getattr(manager, "startup_nodes", {}) or {})
    return f"Redis Cluster at {','.join(names) or 'unknown nodes'}", secrets


def node_of(client: AnyCluster, error: BaseException, key: str) -> AnyNode:
    """The node that answered a call with *error*, a call whose first key is *key*.

    redis-py keeps the connection that read an error reply on the error (the asyncio
    client keeps the node, which has a host and a port too); without it (an older
    redis-py), the node that serves the key's slot, as the client knows it after
    following any redirection, answered.
    """
    connection: object = getattr(error, "connection", None)
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    nodes: Any = client  # the sync client's lookups are untyped, the asyncio one's typed
    if isinstance(host, str) and isinstance(port, int):
        node: AnyNode | None = nodes.get_node(host=host, port=port)
        if node is not None:
            return node
    owner: AnyNode = nodes.get_node_from_key(key)
    return owner


def load_targets(client: AnyCluster, answered: BaseException | None, key: str) -> str | AnyNode:
    """Where ``FUNCTION LOAD`` goes, as ``target_nodes``: every primary, or one node.

    Without *answered* (the first load): every primary.  Else the node that answered
    "function not found" with *answered* to a call whose first key is *key* (see
    `node_of`): it lacks the library (a restart, a failover, ``FUNCTION FLUSH``, a
    slot moved to it); the others load it when they say so themselves.
    """
    if answered is None:
        primaries: str = client.PRIMARIES
        return primaries
    return node_of(client, answered, key)
