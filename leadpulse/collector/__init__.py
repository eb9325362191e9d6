"""`leadpulse collect`: Segment's HTTP tracking API in front of the input topic, so web sites,
apps and servers can point an unchanged Segment or RudderStack SDK at LeadPulse. A runtime
service of its own (not part of the worker): it only validates and produces, and scales
apart from the scoring. It may import schemas, scoring and streams (settings), never cli."""
