"""Schemathesis hook: signs every request to Greenlight as a client does.

Loaded by `.ci/schemathesis` through SCHEMATHESIS_HOOKS. The signature must cover the exact
bytes sent, which exist only once `requests` has prepared the request, so the signing
happens at `requests.Session.send` (the transport Schemathesis uses), with the official
Standard Webhooks library: content is the body when there is one, else
`{METHOD} {path-and-query}`.
"""

import os
import time
import uuid
from datetime import datetime, timezone

import requests
from standardwebhooks.webhooks import Webhook

CLIENT_ID = os.environ["GREENLIGHT_CLIENT_ID"]
WEBHOOK = Webhook(os.environ["GREENLIGHT_CLIENT_SECRET"])

_send = requests.Session.send


def _signed_send(self, request, **kwargs):
    if request.path_url.startswith("/v1/"):
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        content = body if body else f"{request.method} {request.path_url}".encode()
        try:
            # The library signs text; the bodies Schemathesis sends here are JSON (UTF-8).
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            return _send(self, request, **kwargs)  # unsigned: the server answers 401
        msg_id = f"msg_{uuid.uuid4().hex}"
        now = datetime.fromtimestamp(int(time.time()), tz=timezone.utc)
        signature = WEBHOOK.sign(msg_id, now, text)
        request.headers["greenlight-client"] = CLIENT_ID
        request.headers["webhook-id"] = msg_id
        request.headers["webhook-timestamp"] = str(int(now.timestamp()))
        request.headers["webhook-signature"] = signature
    return _send(self, request, **kwargs)


requests.Session.send = _signed_send
