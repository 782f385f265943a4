"""Tell the orgscaler that an org was just used: from a Django signal
handler, a middleware, a webhook, any web app. Standard library only.

    from orgscaler_activity import Reporter

    reporter = Reporter("https://orgscaler-api.keda:9091", token=os.environ["ORGSCALER_TOKEN"],
                        ca="/etc/orgscaler/ca.crt")

    # in a signal handler or a view, on each interaction:
    reporter.record("acme")
    # where the app enqueues GPU jobs for an org (wakes its workers at once,
    # before Cloud Monitoring sees the backlog):
    reporter.hint("projects/p/subscriptions/gpu-jobs", 1, org="acme")
    # in a post_save handler of the org's metadata (an admin token):
    reporter.set_scale_to_zero_allowed("acme", False)

In Django, make one Reporter per process in AppConfig.ready() (see
docs/MIGRATING.md); its sender thread starts there, and again in each
forked worker.

record() never blocks the request and never raises: it puts the org in a
small queue that one background thread sends from, with a short timeout.
Each org is sent at most once per `every` seconds from this process (the
scaler needs no more: an org is active for its whole idle window after its
last activity), so a busy page costs the scaler one call per org per
interval, not one per request. If the scaler cannot be reached, the
activity is dropped and counted in `reporter.failed`; the next interaction
tries again.

hint() is queued the same way (never rate-limited: every enqueue counts).
set_scale_to_zero_allowed() is an admin change: it is sent at once and
raises on failure, so the caller (a post_save handler, best run from
transaction.on_commit) knows the scaler did not take it.

The calls are the scaler's Connect API in JSON: POST
/orgscaler.v1.ActivityService/RecordActivity with {"org": "acme"} and an
"Authorization: Bearer TOKEN" header (a producer token of the scaler's
--api-tokens-file; an admin token for set_scale_to_zero_allowed). With an
https URL the scaler's certificate is checked against `ca` (a PEM bundle),
or the system's roots without it.
"""

import json
import os
import queue
import ssl
import threading
import time
import urllib.request

RECORD = "/orgscaler.v1.ActivityService/RecordActivity"
HINT = "/orgscaler.v1.ActivityService/Hint"
UPDATE = "/orgscaler.v1.AdminService/UpdateOrg"


class Reporter:
    def __init__(self, base_url, token=None, every=10.0, timeout=1.0, max_queued=10000, ca=None):
        self.base = base_url.rstrip("/")
        self.token = token
        self._tls = ssl.create_default_context(cafile=ca) if self.base.startswith("https:") else None
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
        if not self._put((RECORD, {"org": org})):
            with self._lock:
                self._last.pop(org, None)  # the next interaction tries again

    def hint(self, subscription, messages, org=None):
        """Queue an enqueue hint: `messages` were just published to
        `subscription` (projects/P/subscriptions/S), by `org` if given (also
        its activity). Returns at once; never raises."""
        try:
            body = {"subscription": str(subscription), "messages": int(messages)}
            if org is not None:
                body["org"] = str(org)
            self._put((HINT, body))
        except Exception:
            pass

    def _put(self, call):
        try:
            self._queue.put_nowait(call)
            return True
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return False

    def set_scale_to_zero_allowed(self, org, allowed):
        """Turn scale to zero on or off for org (an admin change), at once.
        Returns the org as the scaler holds it after; raises on failure."""
        return self._call(UPDATE, {"org": str(org), "scaleToZeroAllowed": bool(allowed)})["org"]

    def flush(self, timeout=5.0):
        """Wait until everything queued so far was sent or failed (for
        tests and for a process about to exit)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self):
        while True:
            path, body = self._queue.get()
            try:
                self._call(path, body)
                with self._lock:
                    self.sent += 1
            except Exception:  # any failure: count it, keep the sender alive
                with self._lock:
                    self.failed += 1
                    if path == RECORD:
                        self._last.pop(body["org"], None)  # the next interaction retries
            finally:
                self._queue.task_done()

    def _call(self, path, body):
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=self.timeout, context=self._tls) as resp:
            return json.load(resp)  # e.g. {"org": {...}, "woke": true}
