"""The parts of the CXone simulator, one concern per module.

`ratekit_cxone.simulator` is the public module, and `ratekit_cxone._simulator` holds the
`Simulator` itself; these modules hold what it is made of:

- `_data`: the made-up records, contacts and interactions, and the field names of each
  API version;
- `_checks`: the checks of the simulator's arguments;
- `_answers`: what a request gets back (a status, a JSON body, headers) and refusals;
- `_requests`: reading a request's query parameters and ``Accept`` header;
- `_tokens`: access tokens: JWTs minted, bearer tokens issued and checked;
- `_grants`: the OAuth token endpoints and their two grants;
- `_faults`: injected faults: dropped connections, 503 answers and slow answers;
- `_endpoints`: the routes of the API: discovery and the two list calls;
- `_server`: the HTTP server and its request handler.
"""

from __future__ import annotations
