import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

webhook, seen = Webhook(os.environ["CRM_WEBHOOK_SECRET"]), set()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            alert = webhook.verify(body, dict(self.headers))  # the signature and a recent timestamp
        except WebhookVerificationError:
            return self.send_error(401)
        if self.headers["webhook-id"] not in seen:  # a retry or a replay sends the same id again
            seen.add(self.headers["webhook-id"])
            print(alert["type"], alert["data"].get("contact_id") or alert["data"]["account_id"], flush=True)
        self.send_response(204)
        self.end_headers()


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8099"))), Receiver).serve_forever()
