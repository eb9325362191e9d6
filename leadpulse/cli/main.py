"""`leadpulse` command line: parses arguments, checks what a command needs before it does
any work (files, broker, topic, state folder), and dispatches; the work lives elsewhere.
A user's mistake ends in one line on stderr and a non-zero exit, never in a traceback."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from leadpulse import __version__
from leadpulse.cli.notify import add_notify_commands
from leadpulse.cli.preflight import CommandError
from leadpulse.core import describe
from leadpulse.notify.config import NotifyConfigError
from leadpulse.schemas.limits import InputLimits, RecordLimits
from leadpulse.scoring.rules import Rules, RulesError, load_rules
from leadpulse.scoring.timeutil import now_ms, parse_duration_ms, parse_rfc3339_ms
from leadpulse.streams.settings import HELP, Settings, SettingsError, StartupError, drop_faust_variables, env_name

if TYPE_CHECKING:
    from leadpulse.streams.startup import AclBinding

USAGE_ERROR = 2  # bad arguments, files, rules or settings; 1 is for the environment (broker, state)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command = f"leadpulse {args.command}"
    try:
        code: int = args.run(args)
    except CommandError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return error.code
    except StartupError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return 1
    except RulesError as error:
        print(f"leadpulse: bad rules: {error}", file=sys.stderr)
        return USAGE_ERROR
    except SettingsError as error:
        print(f"leadpulse: bad setting: {error}", file=sys.stderr)
        return USAGE_ERROR
    except NotifyConfigError as error:
        print(f"leadpulse notify: bad config: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `leadpulse score ... | head`: the reader has gone, which is not an error of ours.
        # Point stdout at /dev/null so that the interpreter's final flush stays silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


class _Version(argparse.Action):
    """argparse's own would wrap the line to the terminal's width."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"leadpulse {__version__}; scoring core: {describe()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leadpulse", description="Real-time lead scoring on Kafka.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and the scoring core it runs")
    commands = parser.add_subparsers(dest="command", required=True)

    rules = commands.add_parser("rules", help="work with rules files")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser("check", help="validate a rules file and print a summary")
    check.add_argument("file", type=Path)
    check.set_defaults(run=_rules_check)
    compare = rules_commands.add_parser(
        "compare",
        help="compare a shadow app's live scores under new rules with the live app's before promoting them",
    )
    compare.add_argument("--shadow-app", required=True, help="the shadow's LEADPULSE_APP_ID")
    compare.add_argument("--shadow-prefix", required=True, help="the shadow's LEADPULSE_TOPIC_PREFIX")
    compare.add_argument("--rules", type=Path, help="the candidate rules: the version every shadow snapshot must carry")
    compare.add_argument("--limit", type=int, default=10, help="contacts listed with the largest moves (default 10)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.set_defaults(run=_rules_compare)

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
    score.add_argument(
        "--accounts",
        action="store_true",
        help="print account snapshots (one per account, sorted by id) instead of contact snapshots",
    )
    score.add_argument(
        "--nurture",
        action="store_true",
        help="print the nurture records due at --at (by contact, then track) instead of contact snapshots",
    )
    score.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        help="processes to score with (default: one per CPU); the output is the same for any number",
    )
    score.set_defaults(run=_score)

    test = commands.add_parser(
        "backtest",
        help="score a history under two rules files and report what changes, and how well each predicts outcomes",
    )
    test.add_argument(
        "events", type=Path, nargs="?", help="JSON lines, one event per line ('-' for stdin); or --from-topic"
    )
    test.add_argument(
        "--from-topic",
        action="store_true",
        help="read the history from the input topic (LEADPULSE_INPUT_TOPIC), from its beginning to its current end",
    )
    test.add_argument("--candidate", type=Path, required=True, help="the rules file to test")
    test.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="the rules to compare with (default: LEADPULSE_RULES, what the worker runs, else the shipped rules)",
    )
    test.add_argument("--json", type=Path, default=None, help="write the JSON report here (default: stdout)")
    test.add_argument("--html", type=Path, default=None, help="write the HTML report (self-contained, with plots) here")
    test.add_argument(
        "--at", default=None, help="RFC 3339 time to evaluate the final state at (default: the latest event)"
    )
    test.add_argument("--limit", type=int, default=50, help="examples listed per kind of change (default 50)")
    test.add_argument(
        "--calibrate", action="store_true", help="also measure each rules file against the outcomes in the history"
    )
    test.add_argument("--every", default="7d", help="calibration: time between scoring times (default 7d)")
    test.add_argument("--horizon", default="90d", help="calibration: how long after a scoring time a conversion counts")
    test.add_argument("--jobs", type=_jobs, default=None, help="processes to score with (default: one per CPU)")
    test.set_defaults(run=_backtest)

    history = commands.add_parser(
        "history", help="write a synthetic event history with CRM outcomes (docs/backtest.md) to try backtest on"
    )
    history.add_argument("file", type=Path, help="where to write it ('-' for stdout)")
    history.add_argument("--events", type=int, default=100_000, help="events to write (default 100000)")
    history.add_argument("--contacts", type=int, default=10_000, help="contacts in the audience (default 10000)")
    history.add_argument("--days", type=int, default=365, help="days the history spans, ending now (default 365)")
    history.add_argument("--seed", type=int, default=1, help="the same seed writes the same history")
    history.set_defaults(run=_history)

    worker = commands.add_parser(
        "worker",
        help="run a scoring worker (settings from LEADPULSE_* variables)",
        description=WORKER_DESCRIPTION,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.set_defaults(run=_worker)

    produce = commands.add_parser("produce", help="send a JSON-lines file of events to the input topic")
    produce.add_argument("events", type=Path)
    produce.add_argument("--unkeyed", action="store_true", help="send without keys (the worker re-keys them)")
    produce.add_argument(
        "--send-invalid",
        action="store_true",
        help="also send lines that are not JSON objects (reported either way), to exercise the dead-letter path",
    )
    produce.set_defaults(run=_produce)

    erase = commands.add_parser(
        "erase",
        help="erase contacts: their state, snapshots and linked records (a request each on the "
        "erasure-requests topic; docs/erasure.md says what remains and for how long)",
    )
    erase.add_argument("contact_ids", nargs="+", metavar="CONTACT_ID")
    erase.set_defaults(run=_erase)

    tail = commands.add_parser("tail", help="pretty-print an output topic")
    tail.add_argument(
        "topic", help="contact-scores, stage-changes, hot-leads, nurture, dead-letters, or any topic name"
    )
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--idle-exit", type=float, default=None, help="stop after this many seconds without records")
    tail.add_argument("--raw", action="store_true", help="one JSON record per line, for scripts")
    tail.set_defaults(run=_tail)

    topics = commands.add_parser("topics", help="the worker's topics, for an administrator")
    topics_commands = topics.add_subparsers(dest="topics_command", required=True)
    create = topics_commands.add_parser(
        "create", help="create the missing topics with the configured partitions, replicas and configuration"
    )
    create.set_defaults(run=_topics_create)
    listing = topics_commands.add_parser("commands", help="print kafka-topics.sh and kafka-acls.sh commands instead")
    listing.set_defaults(run=_topics_commands)
    acls = topics_commands.add_parser("acls", help="the same ACLs, one a line, for deploy/kafka/acls.sh")
    acls.set_defaults(run=_topics_acls)
    for listed in (listing, acls):
        listed.add_argument("--principal", default=None, help="the service's principal (default User:SASL_USERNAME)")
        listed.add_argument(
            "--service",
            choices=("worker", "notify"),
            default="worker",
            help="whose ACLs: the worker's (default), or leadpulse notify's (run and redrive)",
        )
        listed.add_argument(
            "--config",
            type=Path,
            default=None,
            help="with --service notify: its config file, whose `topics` it reads (default hot-leads, hot-accounts)",
        )
    migrate = topics_commands.add_parser(
        "migrate",
        help="with every worker of the app stopped: copy the records it has not read from the internal topics "
        "named by the prefix (older versions) to those named by the app id",
    )
    migrate.set_defaults(run=_topics_migrate)

    collect = commands.add_parser(
        "collect",
        help="serve Segment's HTTP tracking API (/v1/batch, /v1/track, ...) into the input topic",
        description=COLLECT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    collect.set_defaults(run=_collect)

    demo = commands.add_parser("demo", help="local broker + worker + live synthetic traffic, with live counts")
    demo.add_argument("--rate", type=float, default=200, help="events per second (default 200)")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--contacts", type=int, default=2_000, help="contacts in the synthetic audience")
    demo.add_argument("--history-days", type=int, default=21, help="days of journeys the traffic spans")
    demo.add_argument("--traffic-only", action="store_true", help="only send traffic and show outputs")
    demo.set_defaults(run=_demo)

    board = commands.add_parser(
        "board",
        help="serve the lead board (hot now, contact and account pages, funnel, live hot leads) in a browser",
        description=BOARD_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    board.set_defaults(run=_board)

    add_notify_commands(commands)
    return parser


WORKER_DESCRIPTION = """\
Run a scoring worker: it consumes the input topic, keeps the contacts table and
publishes snapshots, stage changes, hot leads and dead letters. It needs a broker
(deploy/kafka/broker.sh start). Ctrl-C or SIGTERM commits and stops it; it logs to
stdout/stderr."""


COLLECT_DESCRIPTION = """\
Serve Segment's HTTP tracking API: POST /v1/batch, /v1/track, /v1/identify, /v1/page,
/v1/screen, /v1/group, /v1/alias, with a write key as the basic-auth user name. Point a
Segment or RudderStack SDK's host at it. Each message is validated as the worker would,
produced to the input topic keyed by userId (else anonymousId) with acks=all, and the
request is answered 200 once Kafka has them (503 + Retry-After past
LEADPULSE_COLLECT_DELIVERY_TIMEOUT, or while the broker is unreachable). Settings:
LEADPULSE_COLLECT_HOST (127.0.0.1), LEADPULSE_COLLECT_PORT (8088), LEADPULSE_WRITE_KEYS_FILE
(required), the collector's bounds (LEADPULSE_COLLECT_*), and the worker's broker, topic,
rules and input limits (`leadpulse worker --help`)."""


BOARD_DESCRIPTION = """\
Serve the lead board: Hot now (contacts and accounts, filtered by segment, model and
stage), contact and account pages with their score over time, the funnel, search, and hot
leads live as they arrive. It reads the output topics into a read model
(LEADPULSE_BOARD_DATABASE: a SQLite file, default DATA_DIR/board.sqlite3, or a
postgresql:// URL) and serves it on LEADPULSE_BOARD_HOST:LEADPULSE_BOARD_PORT
(127.0.0.1:6070). Every page needs a login with a token from LEADPULSE_API_TOKENS_FILE
(required), or Authorization: Bearer. LEADPULSE_BOARD_RETENTION_DAYS (90): days of history
kept per contact (docs/board.md)."""


def settings_help() -> str:
    """Every LEADPULSE_* variable with its default and meaning, from the settings module
    itself, so that `worker --help` cannot drift from what the worker reads."""
    defaults = Settings()
    lines = ["settings (environment variables; a bad value stops the worker, naming the variable):"]
    for setting in fields(Settings):
        value = getattr(defaults, setting.name)
        default = "(unset)" if value is None else "(empty)" if value == "" else _plain(value)
        lines.append(f"  {env_name(setting.name)}={default}")
        lines.extend(_wrapped(HELP[setting.name]))
    lines.append("")
    lines.append("Faust's own variables (WEB_PORT, WEB_BIND, PROCESSING_GUARANTEE, FAUST_*, F_*...) are ignored.")
    return "\n".join(lines)


def _wrapped(text: str) -> list[str]:
    """Indented under its variable; names and paths stay in one piece."""
    indent = " " * 6
    return textwrap.wrap(
        text, 88, initial_indent=indent, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def _plain(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _rules_compare(args: argparse.Namespace) -> int:
    """Exit 0 when the shadow may be promoted (caught up, one rules version), 1 when not yet."""
    import asyncio

    from leadpulse.cli.preflight import broker_info
    from leadpulse.cli.rollout import shadow_report, shadow_settings
    from leadpulse.scoring.rollout import not_ready

    live = _settings()
    if args.shadow_app == live.app_id or args.shadow_prefix == live.topic_prefix:
        raise CommandError(
            f"the shadow needs an app id and a topic prefix of its own (live: {live.app_id!r}, {live.topic_prefix!r})",
            USAGE_ERROR,
        )
    if args.limit < 0:
        raise CommandError("--limit must be 0 or more", USAGE_ERROR)
    candidate = None
    if args.rules is not None:
        _check_input(args.rules)
        candidate = load_rules(args.rules).version
    shadow = shadow_settings(live, args.shadow_app, args.shadow_prefix)
    broker_info(live)
    behind, comparison = asyncio.run(shadow_report(live, shadow, args.limit))
    reason = not_ready(behind, comparison, candidate)
    if args.json:
        report = {"behind": behind, "ready": reason is None, "not_ready": reason, **comparison.as_json()}
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        return 0 if reason is None else 1
    versions = ", ".join(f"{v} ({n:,})" for v, n in sorted(comparison.shadow_versions.items())) or "none yet"
    print(f"shadow {shadow.app_id} (prefix {shadow.topic_prefix}): {behind:,} input records left to read")
    print(
        f"contacts: {comparison.in_both:,} in both, {comparison.only_live:,} only live, "
        f"{comparison.only_shadow:,} only shadow; shadow rules {versions}"
    )
    changed = ", ".join(f"{kind} {comparison.changed[kind]:,}" for kind in ("stage", "temperature", "segments"))
    print(f"changed: {changed}")
    print(
        f"hot: {comparison.hot[0]:,} live, {comparison.hot[1]:,} shadow "
        f"({comparison.became_hot:,} became hot, {comparison.no_longer_hot:,} no longer)"
    )
    for move in comparison.largest:
        print(f"  {move.contact_id}: {move.live} -> {move.shadow} {', '.join(move.changed)}".rstrip())
    if reason is not None:
        print(f"not ready: {reason}")
        return 1
    print(f"ready: point the consumers at prefix {shadow.topic_prefix} (README, Changing rules)")
    return 0


def _settings() -> Settings:
    return Settings.from_env()


def _rules_from(path: Path | None) -> Rules:
    return load_rules(path if path is not None else _settings().rules)


def _bounded_rules(path: Path | None, limits: InputLimits) -> Rules:
    """`load_rules`, and RulesError naming `[accounts]` if the widest member the rules let a
    contact send would not fit an account's records at `limits` (LEADPULSE_MAX_STRING,
    LEADPULSE_MAX_MESSAGE_BYTES): the worker would refuse members for their size."""
    from leadpulse.schemas.record_sizes import check_account_bounds  # outputs, the scoring core: not for --help

    rules = load_rules(path)
    record_limits = RecordLimits.for_topics(limits.max_message_bytes)
    check_account_bounds(rules, limits.max_string, record_limits, str(path or "default_rules.toml"))
    return rules


def _rules_check(args: argparse.Namespace) -> int:
    _check_input(args.file)
    rules = _bounded_rules(args.file, _settings().input_limits)
    signals = sum(len(group) for group in rules.signals.values())
    print(f"{args.file}: OK, version {rules.version}")
    print(f"  {signals} signals over {len(rules.signals)} event types, {len(rules.categories)} categories")
    print(f"  fit attributes: {', '.join(rules.fit) or '(none)'}")
    print(f"  {len(rules.mapping)} Segment track names mapped to event types")
    print(
        f"  half-life {rules.half_life_ms / 86_400_000:g} d, weights fit {rules.weight_fit:g} / "
        f"engagement {rules.weight_engagement:g}, bands {list(rules.band_floors)} {list(rules.band_labels)}, "
        f"hot re-arm gap {rules.rearm_gap:g}"
    )
    print(f"  prospect at fit >= {rules.prospect_fit:g} and lifetime engagement >= {rules.prospect_engagement:g}")
    for model in rules.models:
        applies = ", ".join(sorted(model.applies_to)) or "every contact"
        source = "own signals" if model.own_signals else "the top level's signals"
        print(
            f"  model {model.name}: for {applies}; {source}, fit attributes {', '.join(model.fit) or '(none)'}, "
            f"weights fit {model.weight_fit:g} / engagement {model.weight_engagement:g}, hot at {model.hot_floor:g}"
        )
    nurture = rules.nurture
    tracks = ", ".join(f"{track.name} ({track.trigger})" for track in nurture.tracks) or "none"
    print(
        f"  nurture tracks: {tracks}; {len(nurture.catalogue)} content entries, "
        f"once per {nurture.period_ms / 86_400_000:g} d"
    )
    return 0


def _check_input(path: Path) -> None:
    """A file to read: refused before any work, in the words a user would use."""
    if str(path) == "-":
        return
    if not path.exists():
        raise CommandError(f"{path}: no such file", USAGE_ERROR)
    if path.is_dir():
        raise CommandError(f"{path}: is a folder, not a file", USAGE_ERROR)
    if not os.access(path, os.R_OK):
        raise CommandError(f"{path}: not readable", USAGE_ERROR)


def _check_output(path: Path, option: str) -> None:
    """A file to write: checked before scoring starts, so that a long run does not end in
    an error after its results were printed."""
    folder = path.parent
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: folder {folder} does not exist", USAGE_ERROR)
    if path.is_dir():
        raise CommandError(f"{option} {path}: is a folder, not a file", USAGE_ERROR)
    if not os.access(path if path.exists() else folder, os.W_OK):
        raise CommandError(f"{option} {path}: not writable", USAGE_ERROR)


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes (1 or more), got {text!r}")
    return jobs


def _score(args: argparse.Namespace) -> int:
    from leadpulse.cli.offline import Kind, future_reference, progress_lines, report_bad_line, score_lines, scored
    from leadpulse.cli.parallel import Options, default_jobs, score_parallel
    from leadpulse.scoring.replay import LAST_EVENT
    from leadpulse.streams.runtime import tune_gc

    _check_input(args.events)
    if args.accounts and args.nurture:
        raise CommandError("--accounts and --nurture: choose one", USAGE_ERROR)
    if args.events_out is not None:
        _check_output(args.events_out, "--events-out")
    at_ms: int | None = None
    if args.at is not None and args.at != LAST_EVENT:
        try:
            at_ms = parse_rfc3339_ms(args.at)
        except ValueError as error:
            raise CommandError(f"--at: {error}", USAGE_ERROR) from None
    rules = _rules_from(args.rules)
    limits = _settings().input_limits  # the worker's, so the same lines are refused
    kind: Kind = "accounts" if args.accounts else "nurture" if args.nurture else "contacts"
    last_event = args.at == LAST_EVENT
    jobs = args.jobs or default_jobs()
    tune_gc()
    stdin = str(args.events) == "-"
    reference = future_reference(at_ms)
    keep = args.events_out is not None  # outputs are only counted otherwise
    if jobs > 1:
        options = Options(rules, reference, limits, kind, at_ms, last_event, args.events_out is not None)
        source = sys.stdin.buffer.read() if stdin else args.events
        result = score_parallel(source, options, jobs, report_bad_line)
    elif stdin:
        run = score_lines(
            sys.stdin.buffer, rules, now_ms=reference, limits=limits, on_bad=report_bad_line, keep_outputs=keep
        )
        result = scored(run, kind, at_ms, last_event)
    else:
        with args.events.open("rb") as stream:
            lines = progress_lines(stream, args.events.stat().st_size, "scoring")
            run = score_lines(lines, rules, now_ms=reference, limits=limits, on_bad=report_bad_line, keep_outputs=keep)
        result = scored(run, kind, at_ms, last_event)
    if jobs == 1:
        # The fold ran without the cyclic collector (score_numbered), so every state it kept is
        # still in its youngest generation: the first collection while printing would walk
        # them all. They live until the command ends: out of the collector's sight (2M events:
        # printing 7.9 s of CPU, 4.9 frozen).
        gc.freeze()
    out = sys.stdout.buffer
    for record in result.records:
        out.write(record + b"\n")
    out.flush()
    if args.events_out is not None:
        try:
            with args.events_out.open("wb") as events_out:
                for line in result.outputs:
                    events_out.write(line + b"\n")
        except OSError as error:
            raise CommandError(f"--events-out {args.events_out}: {error.strerror}") from None
    print(result.totals.summary(), file=sys.stderr)
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from leadpulse.cli.backtest import Options, bad_line_text, run_backtest
    from leadpulse.cli.backtest_html import render
    from leadpulse.cli.offline import future_reference
    from leadpulse.cli.parallel import default_jobs
    from leadpulse.streams.runtime import tune_gc

    if (args.events is None) == (not args.from_topic):
        raise CommandError("a history file ('-' for stdin) or --from-topic: one of them", USAGE_ERROR)
    if args.events is not None:
        _check_input(args.events)
    for path, option in ((args.json, "--json"), (args.html, "--html")):
        if path is not None:
            _check_output(path, option)
    at_ms: int | None = None
    if args.at is not None:
        try:
            at_ms = parse_rfc3339_ms(args.at)
        except ValueError as error:
            raise CommandError(f"--at: {error}", USAGE_ERROR) from None
    durations = []
    for text, option in ((args.every, "--every"), (args.horizon, "--horizon")):
        try:
            durations.append(parse_duration_ms(text))
        except ValueError as error:
            raise CommandError(f"{option}: {error}", USAGE_ERROR) from None
        if durations[-1] <= 0:
            raise CommandError(f"{option}: expected a duration above zero, got {text!r}", USAGE_ERROR)
    if args.limit < 0:
        raise CommandError("--limit: expected 0 or more", USAGE_ERROR)
    baseline, candidate = _rules_from(args.baseline), _rules_from(args.candidate)
    options = Options(
        baseline,
        candidate,
        future_reference(at_ms),
        _settings().input_limits,
        at_ms,
        args.limit,
        args.calibrate,
        durations[0],
        durations[1],
    )
    tune_gc()
    source = _history_source(args.events)
    try:
        report = run_backtest(
            source, options, args.jobs or default_jobs(), lambda bad: print(bad_line_text(bad), file=sys.stderr)
        )
    except ValueError as error:
        raise CommandError(f"{args.events or 'the input topic'}: {error}") from None
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"
    if args.json is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    else:
        args.json.write_bytes(text)
    if args.html is not None:
        args.html.write_text(render(report), encoding="utf-8")
    changes = report["changes"]
    print(
        f"backtest of {report['events']} events: {changes['contacts']} contacts change, "
        f"hot leads +{changes['hot_leads_added']['count']} -{changes['hot_leads_removed']['count']}, "
        f"hot accounts +{changes['hot_accounts_added']['count']} -{changes['hot_accounts_removed']['count']}",
        file=sys.stderr,
    )
    for side, found in report.get("calibration", {}).items():
        print(
            f"calibration of the {side} ({found['rules_version']}): {found['samples']} samples, "
            f"{_percent(found['conversion_rate'])} convert; hot {_percent(found['hot_precision'])} "
            f"(lift {_shown(found['hot_lift'])}), ROC AUC {_shown(found['roc_auc'])}",
            file=sys.stderr,
        )
    return 0


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _history_source(path: Path | None) -> Path | bytes:
    """The history to backtest: a file, stdin read whole, or the input topic read whole."""
    if path is None:
        import asyncio

        from leadpulse.cli.kafka_clients import history_of
        from leadpulse.cli.preflight import broker_info

        settings = _settings()
        broker_info(settings)  # no broker: one line saying so, not a client's retries
        try:
            return asyncio.run(history_of(settings, settings.input_topic))
        except LookupError as error:
            raise CommandError(str(error)) from None
    return sys.stdin.buffer.read() if str(path) == "-" else path


def _history(args: argparse.Namespace) -> int:
    from leadpulse.cli.traffic import DAY_MS, Traffic

    if args.events < 1 or args.contacts < 1 or args.days < 1:
        raise CommandError("--events, --contacts and --days: expected 1 or more", USAGE_ERROR)
    if str(args.file) != "-":
        _check_output(args.file, "file")
    end = now_ms()
    traffic = Traffic(
        args.seed,
        end - args.days * DAY_MS,
        args.days * DAY_MS,
        args.contacts,
        accounts=max(1, args.contacts // 40),
        outcomes=True,
    )
    out = sys.stdout.buffer if str(args.file) == "-" else args.file.open("wb")
    try:
        for event in traffic.events(args.events):
            out.write(orjson.dumps(event) + b"\n")
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from leadpulse.cli import local_state
    from leadpulse.cli.preflight import broker_info, check_web_port, lock_state_folder

    dropped = drop_faust_variables(os.environ)  # before anything imports Faust
    settings = _settings()
    _bounded_rules(settings.rules, settings.input_limits)  # a bad rules file is one line now, not a crash later
    # A second worker on one machine: said now, not after it has made the running ones rebalance.
    check_web_port(settings)
    info = broker_info(settings)
    if settings.store.startswith("rocksdb"):
        lock_state_folder(settings.data_dir)  # nothing is written before the broker answers
        if info.cluster_id is not None:
            local_state.claim(settings.data_dir, info.cluster_id, settings.bootstrap_servers)
    _prepare_topics(settings)
    from leadpulse.streams.pipeline import faust_variables

    ignored = sorted({*dropped, *faust_variables(os.environ)})
    if ignored:
        print(f"leadpulse worker: ignoring {', '.join(ignored)}: the worker reads LEADPULSE_* only", file=sys.stderr)
    from leadpulse.app import app
    from leadpulse.streams.deadline import CRASH_EXIT_DEADLINE_S
    from leadpulse.streams.quiet import BROKERS
    from leadpulse.streams.runtime import tune_gc

    print(f"leadpulse worker: the scoring core is {describe()}", file=sys.stderr)

    tune_gc()
    app.exit_deadline_s = CRASH_EXIT_DEADLINE_S
    BROKERS.exit_on_refusal(settings.auth_failure_grace_s)  # a rotated secret: exit, to restart with it
    # Faust's spelling of our level; the level is not cosmetic (docs/faust-notes.md, "Logging costs CPU").
    sys.argv = ["leadpulse", "worker", "-l", settings.faust_log_level]
    app.main()
    return 0


def _prepare_topics(settings: Settings) -> None:
    """Every topic exists with the right partition count before the worker subscribes."""
    import asyncio

    from leadpulse.streams.startup import prepare_topics

    asyncio.run(prepare_topics(settings))


def _topics_create(args: argparse.Namespace) -> int:
    import asyncio

    from leadpulse.cli.preflight import broker_info
    from leadpulse.streams.startup import create_missing, notify_topic_specs, prepare_topics

    settings = _settings()
    broker_info(settings)
    created = asyncio.run(prepare_topics(settings, create=True))
    created += asyncio.run(create_missing(settings, notify_topic_specs(settings)))  # the worker does not need it
    print(f"created {len(created)} topics: {', '.join(created) or 'none missing'}", file=sys.stderr)
    return 0


def _topics_migrate(args: argparse.Namespace) -> int:
    import asyncio

    from leadpulse.cli.preflight import broker_info
    from leadpulse.streams.migration import Backlog, migrate, renamed
    from leadpulse.streams.startup import prepare_topics

    async def run() -> list[Backlog]:
        await prepare_topics(settings, create=True, migrating=True)
        return await migrate(settings)

    settings = _settings()
    broker_info(settings)
    copied = {backlog.old: backlog.records for backlog in asyncio.run(run())}
    for old, new in renamed(settings).items():
        print(f"{old} -> {new}: {copied.get(old, 0):,} records copied", file=sys.stderr)
    return 0


def _topics_commands(args: argparse.Namespace) -> int:
    from leadpulse.streams.startup import acl_commands, create_commands

    settings = _settings()
    bindings = _acl_bindings(args, settings)
    principal = _principal(args, settings)
    print("# topics (admin.properties: the administrator's client settings)")
    print("\n".join(create_commands(settings)))
    print(f"# ACLs of {'the worker' if args.service == 'worker' else args.service}'s principal {principal}")
    print("\n".join(acl_commands(settings, principal, bindings)))
    return 0


def _topics_acls(args: argparse.Namespace) -> int:
    settings = _settings()
    bindings = _acl_bindings(args, settings)
    principal = _principal(args, settings)
    print("\n".join(binding.line(principal) for binding in bindings))
    return 0


def _acl_bindings(args: argparse.Namespace, settings: Settings) -> list[AclBinding]:
    """The ACLs of `--service`: the worker's, or notify's for the topics its `--config` reads."""
    from leadpulse.streams.startup import acl_bindings, notify_acl_bindings

    if args.service == "worker":
        if args.config is not None:
            raise CommandError("--config is notify's config file: add --service notify", USAGE_ERROR)
        return acl_bindings(settings)
    from leadpulse.notify.alerts import DEFAULT_TOPICS
    from leadpulse.notify.config import load_notify_topics

    return notify_acl_bindings(settings, DEFAULT_TOPICS if args.config is None else load_notify_topics(args.config))


def _principal(args: argparse.Namespace, settings: Settings) -> str:
    return str(args.principal or f"User:{settings.sasl_username or 'leadpulse'}")


def _produce(args: argparse.Namespace) -> int:
    import asyncio

    from tqdm import tqdm

    from leadpulse.cli.kafka_clients import produce_lines
    from leadpulse.cli.preflight import broker_info

    _check_input(args.events)
    settings = _settings()
    broker_info(settings)
    with args.events.open("rb") as lines:
        total = sum(1 for line in lines if line.strip())
    invalid: list[int] = []

    with args.events.open("rb") as lines, tqdm(total=total, unit="ev", desc="producing", disable=None) as bar:

        def report(number: int, problem: str) -> None:
            invalid.append(number)
            tqdm.write(f"line {number}: {problem}", file=sys.stderr)

        sent = asyncio.run(
            produce_lines(
                settings,
                lines,
                keyed=not args.unkeyed,
                progress=bar,
                send_invalid=args.send_invalid,
                on_invalid=report,
            )
        )
    if not invalid:
        summary = ""
    elif args.send_invalid:
        summary = f", {len(invalid)} of them invalid (the worker dead-letters them)"
    else:
        summary = f"; {len(invalid)} invalid lines not sent (--send-invalid sends them, for the dead-letter path)"
    print(f"sent {sent} records to {settings.input_topic}{summary}", file=sys.stderr)
    return 0


def _erase(args: argparse.Namespace) -> int:
    """One `contact_erased` request per contact on the erasure-requests topic, stamped now:
    the worker deletes the state and publishes tombstones, drops the contact's events for the
    rules' erasure grace period, and Kafka drops the rest within the erasure delay
    (docs/erasure.md). E-mail-shaped ids are matched in any case, as the worker keys them."""
    import asyncio

    from leadpulse.cli.kafka_clients import send_erasures
    from leadpulse.cli.preflight import CommandError, broker_info
    from leadpulse.schemas.fields import MAX_ID
    from leadpulse.scoring.timeutil import now_ms

    bad = next((raw for raw in args.contact_ids if not raw.strip() or len(raw) > MAX_ID), None)
    if bad is not None:
        raise CommandError(f"{bad[:60]!r} is not a contact id (1 to {MAX_ID} characters)", USAGE_ERROR)
    settings = _settings()
    topic = settings.erasure_topic
    if topic not in broker_info(settings).topics and not settings.create_topics:
        raise CommandError(f"topic {topic} does not exist and LEADPULSE_CREATE_TOPICS=off: an administrator creates it")
    sent = asyncio.run(send_erasures(settings, args.contact_ids, now_ms()))
    print(f"sent {sent} erasure requests to {topic}", file=sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    import asyncio

    from leadpulse.cli.console import describe
    from leadpulse.cli.kafka_clients import read_topic
    from leadpulse.cli.preflight import broker_info, tail_topic

    settings = _settings()
    topic = tail_topic(args.topic, settings, broker_info(settings).topics)

    async def follow() -> None:
        async for key, value in read_topic(
            settings, topic, from_beginning=args.from_beginning, idle_timeout_s=args.idle_exit
        ):
            if value is None:  # a tombstone: an erased contact, an account whose last contact left
                print(f"DELETED {(key or b'').decode('utf-8', 'replace')}", flush=True)
            else:
                print(value.decode("utf-8", "replace") if args.raw else describe(value), flush=True)

    asyncio.run(follow())
    return 0


def _collect(args: argparse.Namespace) -> int:
    import asyncio

    from leadpulse.cli.collect import allow_descriptors, run_collector
    from leadpulse.cli.preflight import broker_info
    from leadpulse.collector.keys import load_write_keys

    settings = _settings()
    keys = load_write_keys(settings.write_keys_file)
    rules = _rules_from(None)
    allow_descriptors(settings.collect_max_connections)
    broker_info(settings)
    asyncio.run(run_collector(settings, keys, rules))
    return 0


def _board(args: argparse.Namespace) -> int:
    from leadpulse.cli.board import board_command

    return board_command()


def _demo(args: argparse.Namespace) -> int:
    from leadpulse.cli.demo import DemoOptions, demo_settings, run_demo

    options = DemoOptions(args.rate, args.duration, args.contacts, args.history_days, args.traffic_only)
    own_data_dir = not os.environ.get(env_name("data_dir"))
    return run_demo(demo_settings(_settings(), os.environ), options, own_data_dir=own_data_dir)


if __name__ == "__main__":
    sys.exit(main())
