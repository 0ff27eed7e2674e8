"""Screenshots of API reference entries, as a browser shows them.

Builds the site, serves it on 127.0.0.1 with ``http.server``, and has headless Chromium
take one screenshot per entry.  Headless Chromium draws a page scrolled to an anchor
blank, so each shot is of a copy of the page that hides what comes before the entry.
Run it with:

    python docs/screenshots.py /tmp/shots

It needs the docs extra and a ``chromium`` on PATH (Debian:
``apt-get install chromium``).  The PNGs go to the given folder:
``api-retry-RetryPolicy.png`` and so on.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Appended to the copy of a page: hides everything before the entry, at every level.
HIDE_ABOVE = """<script>
let node = document.getElementById(%r).closest(".doc-object");
while (node && !node.classList.contains("md-content__inner")) {
  for (let s = node.previousElementSibling; s; s = s.previousElementSibling) {
    s.style.display = "none";
  }
  node = node.parentElement;
}
</script></body>"""

#: (page of the site, anchor) of each screenshot.
SHOTS = [
    ("api/retry/", "ratekit.retry.RetryPolicy"),
    ("api/cxone/", "ratekit_cxone.CXoneConfig"),
]


def main(argv: list[str]) -> int:
    """Build, serve and shoot; return the exit status."""
    out = Path(argv[1] if len(argv) > 1 else "/tmp/shots")  # noqa: S108 - the default folder
    out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.stderr.write("no chromium on PATH\n")
        return 1
    with tempfile.TemporaryDirectory() as site:
        env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
        subprocess.run(  # noqa: S603 - our interpreter, our arguments
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site],
            cwd=ROOT,
            env=env,
            check=True,
        )
        handler = functools.partial(
            http.server.SimpleHTTPRequestHandler, directory=site
        )
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for page, anchor in SHOTS:
                stem = page.strip("/").replace("/", "-")
                name = f"{stem}-{anchor.rsplit('.', 1)[-1]}.png"
                shot = Path(site, page, f"shot-{anchor}.html")
                html = Path(site, page, "index.html").read_text(encoding="utf-8")
                shot.write_text(
                    html.replace("</body>", HIDE_ABOVE % anchor), encoding="utf-8"
                )
                url = f"http://127.0.0.1:{server.server_port}/{page}{shot.name}"
                subprocess.run(  # noqa: S603 - our arguments
                    [
                        chromium,
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--hide-scrollbars",
                        "--virtual-time-budget=5000",
                        "--run-all-compositor-stages-before-draw",
                        f"--screenshot={out / name}",
                        "--window-size=1280,1400",
                        url,
                    ],
                    check=True,
                    capture_output=True,
                )
                print(out / name)  # noqa: T201 - the script reports what it wrote
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
