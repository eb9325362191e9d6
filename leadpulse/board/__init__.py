"""`leadpulse board`: the lead board, pages that sales and marketing open in a browser (hot
now, contact and account pages with their score over time, the funnel, search, live hot
leads). A runtime service of its own beside the worker: it reads the output topics into a
read model (SQLite in the data folder by default, PostgreSQL with LEADPULSE_BOARD_DATABASE)
and serves HTML from it. It may import schemas, scoring and streams, never cli.

Delivery steps, per batch of output records read (ingest.py):
1. the consumer is assigned every partition of `contact-scores`, `account-scores`,
   `hot-leads`, `hot-accounts`, `stage-changes` and `nurture` (no consumer group: the
   offsets live in the read model) and starts each one at its stored offset, or at the
   first offset on an empty database (a rebuild from the compacted topics and the event
   topics' retention);
2. each record becomes a row change (model.py: pure; a record that is not what its topic
   carries is logged, counted and passed); a tombstone in `contact-scores` deletes the
   person everywhere in the read model and leaves a marker (a digest, not the id) so that
   their alerts and stage changes written before it are not stored again;
3. the batch's changes and each partition's next offset are written in ONE transaction
   (store.py), then the live page listeners hear of the new hot leads (web.py, SSE).

Guarantees (docs/board.md; tests/unit/test_board_model.py, tests/integration/test_board.py):
- Idempotent: a record is applied once, as its offset is stored with its rows; a replay of
  records already applied (a crash between the commit and the next poll, a rebuild) changes
  nothing, and every event row's key is the output's deterministic id.
- A restart resumes at the stored offsets; an empty database rebuilds from the topics.
- Erasure: a contact's tombstone deletes their snapshot, history, alerts, stage changes and
  nurture records in the transaction that stores its offset.
- Bounded (model.py, HistoryPolicy): per contact and account, history is every stage or
  temperature change plus one point per day, at most `MAX_POINTS_PER_DAY` a day, kept for
  LEADPULSE_BOARD_RETENTION_DAYS; alerts, stage changes and nurture records per contact are
  kept for the same retention and at most `MAX_EVENTS_PER_CONTACT`; account snapshots keep
  no member list (members are the contacts rows naming the account).
- Access: every page and API needs a session (login with a bearer token from
  LEADPULSE_API_TOKENS_FILE) or `Authorization: Bearer`; /health and static files only
  without (auth.py).
"""
