"""Tell the orgscaler that an org was just used: from a Django signal
handler, a middleware, a webhook, any web app. Standard library only.

    from orgscaler_activity import Reporter

    reporter = Reporter("http://orgscaler-api.keda:9091", token=os.environ["ORGSCALER_TOKEN"])

    # in a signal handler or a view, on each interaction:
    reporter.record("acme")

record() never blocks the request and never raises: it puts the org in a
small queue that one background thread sends from, with a short timeout.
Each org is sent at most once per `every` seconds from this process (the
scaler needs no more: an org is active for its whole idle window after its
last activity), so a busy page costs the scaler one call per org per
interval, not one per request. If the scaler cannot be reached, the
activity is dropped and counted in `reporter.failed`; the next interaction
tries again.

The call is the scaler's Connect API in JSON: POST
/orgscaler.v1.ActivityService/RecordActivity with {"org": "acme"} and an
"Authorization: Bearer TOKEN" header (a producer token of the scaler's
--api-tokens-file).
"""

import json
import os
import queue
import threading
import time
import urllib.request

PATH = "/orgscaler.v1.ActivityService/RecordActivity"


class Reporter:
    def __init__(self, base_url, token=None, every=10.0, timeout=1.0, max_queued=10000):
        self.url = base_url.rstrip("/") + PATH
        self.token = token
        self.every = every
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._max_queued = max_queued
        self._start()
        # A server that forks its workers after importing this (gunicorn
        # --preload, uWSGI) gives each worker a fresh sender and fresh locks.
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._start)

    def _start(self):
        self._last = {}  # org -> when it was last queued
        self._lock = threading.Lock()
        self._queue = queue.Queue(maxsize=self._max_queued)
        self._thread = threading.Thread(target=self._run, name="orgscaler-activity", daemon=True)
        self._thread.start()

    def record(self, org):
        """Queue one activity of org, unless it was queued within `every`
        seconds. Returns at once; never raises."""
        try:
            self._record(str(org))
        except Exception:  # never into the caller's request
            pass

    def _record(self, org):
        now = time.monotonic()
        with self._lock:
            last = self._last.get(org)
            if last is not None and now - last < self.every:
                return
            self._last[org] = now
            if len(self._last) > 100000:  # a bound, whatever the ids
                self._last.clear()
        try:
            self._queue.put_nowait(org)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                self._last.pop(org, None)  # the next interaction tries again

    def flush(self, timeout=5.0):
        """Wait until everything queued so far was sent or failed (for
        tests and for a process about to exit)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self):
        while True:
            org = self._queue.get()
            try:
                self._send(org)
                with self._lock:
                    self.sent += 1
            except Exception:  # any failure: count it, keep the sender alive
                with self._lock:
                    self.failed += 1
                    self._last.pop(org, None)  # the next interaction retries
            finally:
                self._queue.task_done()

    def _send(self, org):
        body = json.dumps({"org": org}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST", headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            json.load(resp)  # {"org": {...}, "woke": true} on success
