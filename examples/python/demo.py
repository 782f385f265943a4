"""Sends activity for the orgs given, each `repeat` times, through a
Reporter, then prints what was sent as JSON: what the scaler's test of
this example runs. With ORGSCALER_HINT set to a subscription it also sends
one hint for the first org, and with ORGSCALER_ADMIN_TOKEN set it turns
scale to zero off for the first org.

    python3 demo.py http://127.0.0.1:9091 TOKEN 50 acme beta
"""

import json
import os
import sys

from orgscaler_activity import Reporter


def main():
    url, token, repeat, orgs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    reporter = Reporter(url, token=token or None, every=60)
    for _ in range(repeat):
        for org in orgs:
            reporter.record(org)
    if os.environ.get("ORGSCALER_HINT"):
        reporter.hint(os.environ["ORGSCALER_HINT"], 3, org=orgs[0])
    ok = reporter.flush()
    result = {"flushed": ok, "sent": reporter.sent, "failed": reporter.failed, "dropped": reporter.dropped}
    if os.environ.get("ORGSCALER_ADMIN_TOKEN"):
        admin = Reporter(url, token=os.environ["ORGSCALER_ADMIN_TOKEN"])
        result["scaleToZeroAllowed"] = admin.set_scale_to_zero_allowed(orgs[0], False).get("scaleToZeroAllowed", False)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
