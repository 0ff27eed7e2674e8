"""``python -m ratekit_cxone``: the ``ratekit-cxone`` command."""

from __future__ import annotations

from ratekit_cxone._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
