"""What `RedisStore` does differently on a Redis Cluster: keys, slots, nodes.

A cluster runs a script or a function on one node, with keys of one hash slot only, so
every key that one call names carries the same hash tag (the text between the first
``{`` and the next ``}``, which alone decides the slot; see the cluster specification,
"Hash tags").  The store writes the tags itself: a limit's keys are
``prefix{group}:key:kind`` (``prefix{key}:kind`` when the group is the key, as it is by
default), so one limiter's keys always share a slot and different limits spread over
the primaries, and a composition is refused unless its members share a group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratekit._redact import redact_url

if TYPE_CHECKING:
    import redis
    from redis.cluster import ClusterNode, RedisCluster

__all__ = ["connect", "describe", "hash_tag", "is_cluster", "node_of", "outages"]


def hash_tag(text: str) -> str:
    """*text* as the content of a hash tag: ``%`` and ``}`` percent-encoded.

    A ``}`` would end the tag early (so that different groups would share a slot, or an
    empty tag would hash the whole key); encoding it keeps the tag exactly the group,
    and the encoding is one to one.
    """
    return text.replace("%", "%25").replace("}", "%7D")


def is_cluster(client: object) -> bool:
    """Whether *client* is a `redis.cluster.RedisCluster` (without importing it before)."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def connect(url: str, timeout: float) -> RedisCluster:
    """A cluster client for *url* (any one node), which discovers the others at once.

    Raises:
        ValueError: If *url* is not a Redis URL.
        redis.exceptions.RedisClusterException: If no node can be reached.
    """
    import redis as redis_module
    from redis.backoff import NoBackoff
    from redis.cluster import RedisCluster
    from redis.retry import Retry

    try:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry after a failed node (a failover, a restart), on the
            # topology as refreshed by the failure; redis-py follows MOVED and ASK
            # redirections by itself.
            retry=Retry(NoBackoff(), 1, (redis_module.ConnectionError,)),
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


def describe(client: RedisCluster) -> tuple[str, tuple[str, ...]]:
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


def node_of(client: RedisCluster, error: BaseException, key: str) -> ClusterNode:
    """The node that answered a call with *error*, a call whose first key is *key*.

    redis-py keeps the connection that read an error reply on the error; without it (an
    older redis-py), the node that serves the key's slot, as the client knows it after
    following any redirection, answered.
    """
    connection: redis.connection.AbstractConnection | None = getattr(error, "connection", None)
    host, port = getattr(connection, "host", None), getattr(connection, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        node: ClusterNode | None = client.get_node(host=host, port=port)  # type: ignore[no-untyped-call]
        if node is not None:
            return node
    owner: ClusterNode = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
    return owner
