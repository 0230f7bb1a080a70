"""Load built book pages in headless Chromium and check what a reader's browser gets.

For each page (default: intro, moe, papers) a fresh Chromium with an empty profile and the cache
off opens the page from a local HTTP server over the built HTML; the script talks to it over the
DevTools protocol on a pipe (``--remote-debugging-pipe``, standard library only). It measures

- bytes loaded: the sum of each response's transferred size, the server gzip-compressing text
  as any static host does (the decoded size is reported beside it);
- console errors: ``console.error``, uncaught exceptions, browser log errors (a 404 is one) and
  failed requests;
- formulas: after ``MathJax.startup.promise`` resolves, the number of ``mjx-container`` elements
  against the number of Sphinx math nodes, and ``mjx-merror`` (TeX errors);
- layout: the page does not scroll sideways, every table fits its box or its box scrolls, and
  every figure in the article links to its full-size image.

Exit 0 when every page passes (< ``--max-mib`` loaded, no console error, every formula rendered,
layout as above), 1 otherwise, 2 when Chromium or the built book is missing.
Usage: ``python book/check_pages.py [--html book/_build/html] [--pages intro moe papers]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import http.server
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TEXT_TYPES = ("text/", "application/javascript", "application/json", "image/svg+xml")

PAGE_STATS_JS = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const root = document.documentElement;
  const article = document.querySelector('article') || document.body;
  const tables = [...article.querySelectorAll('table')].map(t => {
    const box = t.parentElement;
    return {width: t.scrollWidth, box: box.clientWidth, overflow: getComputedStyle(box).overflowX};
  });
  const imgs = [...article.querySelectorAll('img')];
  return JSON.stringify({
    math: article.querySelectorAll('span.math, div.math').length,
    rendered: article.querySelectorAll('mjx-container').length,
    merror: document.querySelectorAll('mjx-merror').length,
    page_overflow_px: root.scrollWidth - root.clientWidth,
    tables: tables,
    figures: imgs.length,
    figures_linked: imgs.filter(i => i.closest('a[href]')).length,
  });
})()"""


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; text gzip-compressed when the client accepts it (as a static host does)."""

    def log_message(self, *args) -> None:  # quiet
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        ctype = self.guess_type(str(path))
        if (path.is_file() and ctype.startswith(TEXT_TYPES)
                and "gzip" in self.headers.get("Accept-Encoding", "")):
            body = gzip.compress(path.read_bytes(), mtime=0)
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return _Bytes(body)
        return super().send_head()


class _Bytes:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, *_):
        data, self.data = self.data, b""
        return data

    def close(self) -> None:
        pass


class _Pipe:
    """The DevTools protocol over Chromium's fds 3 (commands in) and 4 (replies out)."""

    def __init__(self, browser: str, profile: str, extra: list[str]):
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()

        def child_fds():  # move the two ends to fds 3 and 4 in the child
            a, b = os.dup(cmd_r), os.dup(out_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [browser, "--headless", "--disable-gpu", "--no-sandbox", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions",
             "--disable-background-networking", "--window-size=1280,900", *extra, "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=child_fds)
        os.close(cmd_r)
        os.close(out_w)
        self._id = 0
        self.messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._out_r, "rb", buffering=0) as f:
            while chunk := f.read(1 << 16):
                buf += chunk
                *done, buf = buf.split(b"\0")
                for raw in done:
                    self.messages.put(json.loads(raw))

    def pump(self, timeout: float) -> dict | None:
        """The next message (events are also kept in self.events), or None after timeout s."""
        try:
            msg = self.messages.get(timeout=timeout)
        except queue.Empty:
            return None
        if "method" in msg:
            self.events.append(msg)
        return msg

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            reply = self.pump(end - time.monotonic())
            if reply and reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
        raise TimeoutError(f"no reply to {method} in {timeout} s")

    def wait_event(self, method: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(e["method"] == method for e in self.events):
                return True
            self.pump(0.1)
        return False

    def settle(self, quiet: float = 1.0, timeout: float = 20.0) -> None:
        """Wait until no network event has arrived for `quiet` s (lazily loaded fonts)."""
        end, last = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() < end and time.monotonic() - last < quiet:
            msg = self.pump(0.1)
            if msg and msg.get("method", "").startswith("Network."):
                last = time.monotonic()

    def close(self) -> None:
        try:
            os.close(self._cmd_w)
            self.proc.terminate()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


@contextlib.contextmanager
def serve(html: Path):
    """A local HTTP server over `html` (text gzip-compressed); yields its base URL."""
    handler = functools.partial(_Handler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def check_page(browser: str, url: str) -> dict:
    """Load `url` in a fresh headless Chromium; return the measurements described above."""
    with tempfile.TemporaryDirectory() as profile:
        cdp = _Pipe(browser, profile, [])
        try:
            target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            sid = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"]
            for domain in ("Network", "Runtime", "Log", "Page"):
                cdp.call(f"{domain}.enable", session=sid)
            cdp.call("Network.setCacheDisabled", {"cacheDisabled": True}, session=sid)
            cdp.call("Page.navigate", {"url": url}, session=sid)
            loaded = cdp.wait_event("Page.loadEventFired", 30.0)
            res = cdp.call("Runtime.evaluate", {"expression": PAGE_STATS_JS, "awaitPromise": True,
                                                "returnByValue": True}, session=sid, timeout=30.0)
            value = res["result"].get("value")
            if not isinstance(value, str):  # e.g. a redirect page navigated away
                raise RuntimeError(f"could not read the page's state: {res['result']}")
            stats = json.loads(value)
            cdp.settle()
        finally:
            cdp.close()
    events = [e for e in cdp.events if e.get("sessionId") == sid]
    transferred = sum(e["params"]["encodedDataLength"] for e in events
                      if e["method"] == "Network.loadingFinished")
    decoded = sum(e["params"]["dataLength"] for e in events
                  if e["method"] == "Network.dataReceived")
    requests = sum(e["method"] == "Network.requestWillBeSent" for e in events)
    errors = []
    for e in events:
        p = e["params"]
        if e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", "")))
                                                 for a in p["args"]))
        elif e["method"] == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            errors.append("exception: " + d.get("exception", {}).get("description", d["text"]))
        elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
            errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}".strip())
        elif e["method"] == "Network.loadingFailed":
            errors.append(f"request failed: {p['errorText']}")
    if not loaded:
        errors.append("page: no load event in 30 s")
    return {"url": url, "requests": requests, "bytes": transferred, "decoded_bytes": decoded,
            "errors": errors, **stats}


def problems(r: dict, max_bytes: int) -> list[str]:
    """Why a page's measurements fail the check (empty: it passes)."""
    out = []
    if r["bytes"] >= max_bytes:
        out.append(f"loads {r['bytes'] / 2**20:.2f} MiB (limit {max_bytes / 2**20:g} MiB)")
    if r["errors"]:
        out.append(f"{len(r['errors'])} console error(s)")
    if r["rendered"] != r["math"] or r["merror"]:
        out.append(f"{r['rendered']} of {r['math']} formulas rendered, {r['merror']} TeX errors")
    if r["page_overflow_px"] > 0:
        out.append(f"page scrolls sideways by {r['page_overflow_px']} px")
    bad = [t for t in r["tables"] if t["width"] > t["box"] + 1 and t["overflow"] not in
           ("auto", "scroll")]
    if bad:
        out.append(f"{len(bad)} table(s) wider than their box, which does not scroll")
    if r["figures_linked"] < r["figures"]:
        out.append(f"{r['figures'] - r['figures_linked']} figure(s) without a full-size link")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=HERE / "_build" / "html")
    ap.add_argument("--pages", nargs="+", default=["intro", "moe", "papers"])
    ap.add_argument("--max-mib", type=float, default=2.0)
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    args = ap.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print("error: no Chromium found (tried " + ", ".join(BROWSERS) + "); on Debian: "
              "apt-get install chromium", file=sys.stderr)
        return 2
    missing = [p for p in args.pages if not (args.html / f"{p}.html").is_file()]
    if missing:
        print(f"error: {args.html} has no {', '.join(missing)} page; build the book first "
              "(nox -s book)", file=sys.stderr)
        return 2
    results, failed = [], False
    with serve(args.html) as base:
        for page in args.pages:
            r = check_page(browser, f"{base}/{page}.html")
            why = problems(r, int(args.max_mib * 2**20))
            r["page"], r["problems"] = page, why
            results.append(r)
            failed |= bool(why)
            print(f"{page}: {r['bytes'] / 2**20:.2f} MiB loaded ({r['decoded_bytes'] / 2**20:.2f}"
                  f" MiB decoded, {r['requests']} requests), {len(r['errors'])} console errors, "
                  f"{r['rendered']}/{r['math']} formulas rendered, {r['merror']} TeX errors, "
                  f"{len(r['tables'])} tables, {r['figures_linked']}/{r['figures']} figures "
                  f"linked: {'ok' if not why else 'FAIL: ' + '; '.join(why)}")
            for err in r["errors"][:10]:
                print(f"    {err.splitlines()[0]}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
