"""Sends activity for the orgs given, each `repeat` times, through a
Reporter, then prints what was sent as JSON: what the scaler's test of
this example runs.

    python3 demo.py http://127.0.0.1:9091 TOKEN 50 acme beta
"""

import json
import sys

from orgscaler_activity import Reporter


def main():
    url, token, repeat, orgs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    reporter = Reporter(url, token=token or None, every=60)
    for _ in range(repeat):
        for org in orgs:
            reporter.record(org)
    ok = reporter.flush()
    print(json.dumps({"flushed": ok, "sent": reporter.sent, "failed": reporter.failed, "dropped": reporter.dropped}))


if __name__ == "__main__":
    main()
