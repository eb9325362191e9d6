"""Faust agents: thin, they move data between Kafka and the scoring core."""
