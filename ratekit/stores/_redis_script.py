"""The Lua code that runs every `RedisLimiter` call inside Redis, atomically.

The code itself is ``ratekit.lua``, beside this module, shipped in the package.

It is loaded once as a function library (Redis 7 and later: `LIBRARY`, called by
``FCALL`` of `FUNCTION`), so that its definitions run once and each call only runs
``handle``; on Redis 6.2, or where ``FUNCTION`` is refused, the same code runs as a
script (`SCRIPT`, by ``EVALSHA``), which defines everything again on every call.  Older
servers lack ``SET``'s ``PXAT``, and are not supported.

Each Lua function ports the Python method named in its comment (``ratekit/_limiter.py``,
``_token_bucket.py``, ``_leaky_bucket.py``, ``_windows.py``, ``_composite.py``) operation
for operation, in the same order, so that given the same clock readings the store and the
in-memory strategies agree to the last bit.  Numbers cross between Python and Lua as text
with 17 significant digits, which round-trips every double exactly (Lua's own
``tostring`` keeps 14 and would not); the states in Redis hold them as the doubles
themselves (``struct.pack``: exact, and read back without parsing text).

``KEYS``: two per member, its state (a string) and its log (a list, used by the
sliding window only; a bucket's or a fixed window's log never exists, so that on a
cluster a call waits for a slot that is moving).  ``ARGV``: the operation (``try``,
``book``, ``cancel`` or ``level``), the time (empty: the server's ``TIME``), the cost, a
limit on the delay (``book``) or the booking's instant (``cancel``), the booking's token
(``cancel``), ``1`` for a composition, the expiry margin in milliseconds, the number of
members, then three values per member: its kind (``tb``, ``lb``, ``sw`` or ``fw``) and
two parameters (the rate per second and the capacity for the buckets, the limit and the
window for the windows).

The reply is one text, its parts separated by single spaces (a table costs Redis more to
send): ``try`` answers ``1`` (granted) or ``0`` and the delay; ``book`` answers ``1``,
the instant, the delay and the booking's token, or ``0``, the instant and the delay;
``cancel`` answers ``1`` (withdrawn) or ``0``; ``level`` answers the level.

A state is one string, written with its expiry by one ``SET``: its numbers as
little-endian doubles, then the withdrawals as text, if there are any.  A token bucket
packs its level and stamp, a leaky bucket the instant of its next grant, a fixed window
its end, what it has used and its last grant; a sliding window its head, base, running
total, epoch, version, the log's size and how many entries that have left the window are
still in the log (they are removed in batches), then, if the log is not empty, its first
and last entries (instant and running total), so that most calls read nothing of the log
itself.  The log lists the entries, oldest first, each its instant and running total
packed as two doubles.

Earlier versions kept each state in a hash, its numbers as text, and a sliding window's
log in a sorted set of ``"instant running-total"`` texts; such a state is read as it was
written (``GET`` answers ``WRONGTYPE``, and the hash is read instead), its log rewritten
as a list, and the state replaced by the current form at the next write.  An earlier
version given a current state fails with ``WRONGTYPE`` rather than misread it: upgrade
every process that shares a limit.
"""

from __future__ import annotations

import hashlib
from importlib import resources


def forms(code: str) -> tuple[str, str, str]:
    """The name, library and script of Lua *code* that defines ``handle(KEYS, ARGV)``.

    The name, of the function library and of its one function, carries a hash of the
    code, so a changed script is loaded beside an older one and never calls it.  The
    library (``FUNCTION LOAD``, then ``FCALL``) runs the definitions once, at load,
    instead of on every call; the script (``EVALSHA``) is for servers without functions.
    """
    body = "\n" + code
    name = f"ratekit_{hashlib.sha256(body.encode()).hexdigest()[:16]}"
    library = f"#!lua name={name}\n{body}\nredis.register_function('{name}', handle)\n"
    return name, library, f"{body}\nreturn handle(KEYS, ARGV)\n"


FUNCTION, LIBRARY, SCRIPT = forms(
    (resources.files("ratekit.stores") / "ratekit.lua").read_text(encoding="utf-8")
)
