"""Other implementations of the worker's job for bench.pipeline, each calling the same
scoring core: what a user could pick instead of LeadPulse's worker (docs in bench/README.md)."""
