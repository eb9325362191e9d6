"""`leadpulse notify`: hot leads and hot accounts (optionally stage changes and nurture
records) from their output topics to signed webhooks and Slack. A runtime service of its own
beside the worker: its own consumer group (`APP_ID-notify`), its own /health and /metrics.
It may import schemas, scoring and streams, never cli.

Delivery steps, per output record read (service.py):
1. it is parsed into an Alert (alerts.py; a record that is not one is logged, counted and
   passed) and routed (routing.py) to its destinations;
2. an alert older than `max_alert_age` goes nowhere (a replay of history pages no one), and
   a destination where its key is cooling down is skipped (throttle.py); both are counted;
3. each remaining (alert, destination) is delivered by a task of its own (delivery.py):
   signed and sent, each attempt with its own timestamp (requests.py), the answer judged by
   outcome.py: a 2xx delivers; 400/401/403/404/410 dead-letter at once; anything else (5xx,
   429, timeouts, connection errors) is tried again after an exponential backoff with jitter
   or the receiver's Retry-After, under the destination's rate limit, until its retry window
   ends, and then dead-lettered;
4. a dead-lettered alert is written to `APP_ID-delivery-failures` (failures.py: the alert,
   destination, reason, attempts, times) and counts as settled only once the broker has
   acknowledged it (acks=all); `leadpulse notify redrive` sends those again (redrive.py);
5. offsets are committed up to each partition's lowest alert not yet settled for every
   destination it was routed to (watermark.py).

Guarantees (docs/notify.md; tests/integration/test_notify.py injects each failure):
- At-least-once per destination: an alert is delivered (2xx) or in the delivery-failures
  topic; `kill -9` at any point only re-sends, with the same `webhook-id` (the output
  record's deterministic id), so a receiver that deduplicates on it sees each alert once.
- No head-of-line blocking across destinations or keys: a destination being retried holds
  back only its own later alerts of the same key (kept in order per destination and key).
- Bounded: at most LEADPULSE_NOTIFY_MAX_PENDING alerts read and unsettled (fetching pauses
  at the cap, the consumer stays in its group); per destination at most 16 requests at once;
  an answer's body is read up to 64 KiB; the cool-down remembers a bounded number of keys.
"""
