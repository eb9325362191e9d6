"""`leadpulse` command line: parses arguments and dispatches; the work lives elsewhere."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from scoring.rules import Rules, RulesError, load_rules
from scoring.timeutil import parse_rfc3339_ms
from streams.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except RulesError as error:
        print(f"leadpulse: bad rules: {error}", file=sys.stderr)
        return 2
    except SettingsError as error:
        print(f"leadpulse: bad setting: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadpulse", description="Real-time lead scoring on Kafka.")
    commands = parser.add_subparsers(dest="command", required=True)

    rules = commands.add_parser("rules", help="work with rules files")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser("check", help="validate a rules file and print a summary")
    check.add_argument("file", type=Path)
    check.set_defaults(run=_rules_check)

    score = commands.add_parser("score", help="score a JSON-lines file of events offline")
    score.add_argument("events", type=Path, help="JSON lines, one event per line ('-' for stdin)")
    score.add_argument("--rules", type=Path, default=None, help="rules file (default: the shipped rules)")
    score.add_argument(
        "--at",
        default=None,
        help="RFC 3339 time to evaluate every contact at (default: the latest occurred_at in the file); "
        "'last-event' evaluates each contact at its own latest event, as the stream publishes it",
    )
    score.add_argument("--events-out", type=Path, default=None, help="write stage changes and hot leads here")
    score.set_defaults(run=_score)

    worker = commands.add_parser("worker", help="run a scoring worker (settings from LEADPULSE_* variables)")
    worker.set_defaults(run=_worker)

    produce = commands.add_parser("produce", help="send a JSON-lines file of events to the input topic")
    produce.add_argument("events", type=Path)
    produce.add_argument("--unkeyed", action="store_true", help="send without keys (the worker re-keys them)")
    produce.set_defaults(run=_produce)

    tail = commands.add_parser("tail", help="pretty-print an output topic")
    tail.add_argument("topic", help="contact-scores, stage-changes, hot-leads, dead-letters, or any topic name")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--idle-exit", type=float, default=None, help="stop after this many seconds without records")
    tail.add_argument("--raw", action="store_true", help="one JSON record per line, for scripts")
    tail.set_defaults(run=_tail)

    demo = commands.add_parser("demo", help="local broker + worker + live synthetic traffic, with live counts")
    demo.add_argument("--rate", type=float, default=200, help="events per second (default 200)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--contacts", type=int, default=2_000, help="contacts in the synthetic audience")
    demo.add_argument("--history-days", type=int, default=21, help="days of journeys the traffic spans")
    demo.add_argument("--traffic-only", action="store_true", help="only send traffic and show outputs")
    demo.set_defaults(run=_demo)
    return parser


def _settings() -> Settings:
    return Settings.from_env()


def _rules_from(path: Path | None) -> Rules:
    return load_rules(path if path is not None else _settings().rules)


def _rules_check(args: argparse.Namespace) -> int:
    rules = load_rules(args.file)
    signals = sum(len(group) for group in rules.signals.values())
    print(f"{args.file}: OK, version {rules.version}")
    print(f"  {signals} signals over {len(rules.signals)} event types, {len(rules.categories)} categories")
    print(f"  fit attributes: {', '.join(rules.fit) or '(none)'}")
    print(
        f"  half-life {rules.half_life_ms / 86_400_000:g} d, weights fit {rules.weight_fit:g} / "
        f"engagement {rules.weight_engagement:g}, bands {list(rules.band_floors)} {list(rules.band_labels)}, "
        f"hot re-arm gap {rules.rearm_gap:g}"
    )
    print(f"  prospect at fit >= {rules.prospect_fit:g} and lifetime engagement >= {rules.prospect_engagement:g}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from schemas.outputs import dumps, output_record, snapshot_record
    from streams.offline import LAST_EVENT, progress_lines, report_bad_line, score_lines
    from streams.runtime import tune_gc

    rules = _rules_from(args.rules)
    tune_gc()
    at_ms: int | None = None
    if args.at is not None and args.at != LAST_EVENT:
        try:
            at_ms = parse_rfc3339_ms(args.at)
        except ValueError as error:
            print(f"leadpulse score: --at: {error}", file=sys.stderr)
            return 2
    if str(args.events) == "-":
        run = score_lines(sys.stdin.buffer, rules, now_ms=at_ms, on_bad=report_bad_line)
    else:
        try:
            stream = args.events.open("rb")
        except OSError as error:
            print(f"leadpulse score: {args.events}: {error.strerror}", file=sys.stderr)
            return 2
        with stream:
            lines = progress_lines(stream, args.events.stat().st_size, "scoring")
            run = score_lines(lines, rules, now_ms=at_ms, on_bad=report_bad_line)
    evaluate_at = None if args.at == LAST_EVENT else at_ms if at_ms is not None else run.latest_ms
    out = sys.stdout.buffer
    for view in run.snapshots(evaluate_at, rules):
        out.write(dumps(snapshot_record(view)) + b"\n")
    out.flush()
    if args.events_out is not None:
        with args.events_out.open("wb") as events_out:
            for output in run.outputs:
                events_out.write(dumps(output_record(output)) + b"\n")
    print(
        f"scored {run.events} events for {len(run.contacts)} contacts: {run.bad} bad lines skipped, "
        f"{run.duplicates} duplicates, {run.unscored} unscored; {len(run.outputs)} outputs",
        file=sys.stderr,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    settings = _settings()
    from streams.app import app
    from streams.runtime import tune_gc

    tune_gc()
    # FINDINGS: at -l warn Faust's console spinner sets the root logger to DEBUG (~10% CPU).
    sys.argv = ["leadpulse", "worker", "-l", settings.log_level]
    app.main()
    return 0


def _produce(args: argparse.Namespace) -> int:
    import asyncio

    from tqdm import tqdm

    from streams.kafka_io import produce_lines

    settings = _settings()
    try:
        total = sum(1 for line in args.events.open("rb") if line.strip())
    except OSError as error:
        print(f"leadpulse produce: {args.events}: {error.strerror}", file=sys.stderr)
        return 2
    with args.events.open("rb") as lines, tqdm(total=total, unit="ev", desc="producing", disable=None) as bar:
        sent = asyncio.run(produce_lines(settings, lines, keyed=not args.unkeyed, progress=bar))
    print(f"sent {sent} events to {settings.input_topic}", file=sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    import asyncio

    from streams.console import describe
    from streams.kafka_io import read_topic
    from streams.topics import NAMES

    settings = _settings()
    topic = settings.topic(args.topic) if args.topic in NAMES else args.topic

    async def follow() -> None:
        async for _key, value in read_topic(
            settings, topic, from_beginning=args.from_beginning, idle_timeout_s=args.idle_exit
        ):
            print(value.decode("utf-8", "replace") if args.raw else describe(value), flush=True)

    asyncio.run(follow())
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streams.demo import DemoOptions, run_demo

    options = DemoOptions(args.rate, args.duration, args.contacts, args.history_days, args.traffic_only)
    return run_demo(_settings(), options)


if __name__ == "__main__":
    sys.exit(main())
