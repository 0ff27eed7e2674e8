"""The Lua code that runs every `RedisLimiter` call inside Redis, atomically.

The code itself is ``ratekit.lua``, beside this module, shipped in the package.

It is loaded once as a function library (Redis 7 and later: `LIBRARY`, called by
``FCALL`` of `FUNCTION`), so that its definitions run once and each call only runs
``handle``; on older servers, or where ``FUNCTION`` is refused, the same code runs as a
script (`SCRIPT`, by ``EVALSHA``), which defines everything again on every call.

Each Lua function ports the Python method named in its comment (``ratekit/_limiter.py``,
``_token_bucket.py``, ``_leaky_bucket.py``, ``_windows.py``, ``_composite.py``) operation
for operation, in the same order, so that given the same clock readings the store and the
in-memory strategies agree to the last bit.  Numbers cross between Python, Lua and Redis
as text with 17 significant digits, which round-trips every double exactly (Lua's own
``tostring`` keeps 14 and would not).

``KEYS``: two per member, its state (a hash) and its log (a sorted set, used by the
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

A sliding window's hash holds its state in one field, ``S``: its head, base, running
total, epoch and version, then the log's size, how many entries that have left the
window are still in the log (they are removed in batches), and the log's first and last
entries (instant and running total), separated by spaces; so most calls read nothing of
the log itself.  Its ``h`` holds ``-``, so that an earlier version (which kept the state
in ``h``, ``b``, ``T``, ``E`` and ``V``) fails on such a state rather than misread it (it
writes nothing first, unless every entry of the log has expired: then it deletes the
log); a state as an earlier version wrote it is read from the log, and written anew.
The withdrawals (``w``) are written only when there are some, or were.
"""

from __future__ import annotations

import hashlib
from importlib import resources

#: The code shared by both forms: every definition, and ``handle(KEYS, ARGV)``, one call.
_BODY = "\n" + (resources.files("ratekit.stores") / "ratekit.lua").read_text(encoding="utf-8")

#: The name of the function library, and of its one function: it carries a hash of the
#: code, so a changed script is loaded beside an older one and never calls it.
FUNCTION = f"ratekit_{hashlib.sha256(_BODY.encode()).hexdigest()[:16]}"

#: The code as a Redis 7 function library (``FUNCTION LOAD``, then ``FCALL``): the
#: definitions run once, at load, instead of on every call.
LIBRARY = f"#!lua name={FUNCTION}\n{_BODY}\nredis.register_function('{FUNCTION}', handle)\n"

#: The code as a script (``EVALSHA``), for servers without functions.
SCRIPT = f"{_BODY}\nreturn handle(KEYS, ARGV)\n"
