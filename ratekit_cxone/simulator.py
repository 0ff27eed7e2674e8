"""A local simulator of the NICE CXone REST API, for tests and demos without an account.

`Simulator` is a real HTTP server on loopback that implements both contracts the
adapter speaks: the real platform (issuer discovery, the ``password`` grant, API base
discovery, ``contacts/completed`` paged by ``top``/``skip`` and ``_links.next``) and
the tutorial's (``client_credentials`` with scopes, ``interactions`` paged by page
number).  It can enforce a server-side limit (429 with ``Retry-After``), expire tokens,
and inject 503 answers, dropped connections and slow answers, all deterministic from a
seed:

```python
from ratekit.testing import FakeClock
from ratekit_cxone.simulator import Simulator

with Simulator(records=250, rate="10/second", clock=FakeClock()) as simulator:
    environment = simulator.env("contacts")   # CXONE_ISSUER=simulator.url, ...
    expected = simulator.contacts()           # what a full export must yield
    ...                                       # run the client against it
    print(simulator.statistics().throttled)   # how often it hit the limit
```

`Simulator.contacts` and `Simulator.interactions` return the records the API serves,
so a test can compare them with what a client collected; `Simulator.seen` lists every
request target received, so a test can check that no secret went into a URL.
"""

from __future__ import annotations

from ratekit_cxone._simulator import SeenRequest, Simulator, SimulatorStatistics

__all__ = ["SeenRequest", "Simulator", "SimulatorStatistics"]
