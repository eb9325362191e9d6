"""`leadpulse notify ...`: the notifier's commands (docs/notify-config.md). Its own module so
that each command of the group stays beside the others; main.py only adds the group. `run`
and `redrive` live in cli/notify_run.py, imported when they run (the service's clients)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from leadpulse.notify.config import Destination, NotifyConfig, Route, load_notify_config

NOTIFY_DESCRIPTION = """\
Send LeadPulse's alerts (hot leads, hot accounts, optionally stage changes and nurture
records) to Slack and to signed webhooks (Standard Webhooks), as a config file says:
docs/notify-config.md."""


def add_notify_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    notify = commands.add_parser(
        "notify",
        help="send alerts to Slack and signed webhooks",
        description=NOTIFY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    notify_commands = notify.add_subparsers(dest="notify_command", required=True)
    check = notify_commands.add_parser(
        "check",
        help="check a notify config file and the secrets it names; print what it sends where",
    )
    check.add_argument("file", type=Path)
    check.set_defaults(run=_check)
    run = notify_commands.add_parser(
        "run",
        help="deliver alerts until SIGTERM or Ctrl-C (/health and /metrics on LEADPULSE_NOTIFY_HOST:PORT)",
    )
    run.add_argument("file", type=Path)
    run.set_defaults(run=_run)
    again = notify_commands.add_parser(
        "redrive", help="send the alerts of the delivery-failures topic again, then exit"
    )
    again.add_argument("file", type=Path)
    again.add_argument(
        "--retry-for",
        default="1m",
        help="retry each alert this long before writing it back as failed (a duration, default 1m)",
    )
    again.set_defaults(run=_redrive)


def _check(args: argparse.Namespace) -> int:
    """Reads the secrets too (from this process's environment): a secret that is missing
    here is missing for `notify run` started the same way."""
    config = load_notify_config(args.file, os.environ)
    print(f"{args.file}: ok: {len(config.destinations)} destinations, {len(config.routes)} routes")
    print(
        f"  reads {', '.join(config.topics)}; alerts older than {_duration(config.max_alert_age_ms)} "
        "are not sent (a replay of history stays quiet)"
    )
    for destination in config.destinations.values():
        print(f"  destination {destination.name}: {_destination(destination)}")
    for route in config.routes:
        print(f"  route {route.name}: {_route(route, config)} -> {', '.join(route.destinations)}")
    return 0


def _destination(destination: Destination) -> str:
    """What a destination does, never its URL (a Slack URL is a secret) nor its secrets."""
    kind = (
        "Slack incoming webhook"
        if destination.kind == "slack"
        else f"webhook signed with {len(destination.secrets)} secret{'s' if len(destination.secrets) > 1 else ''}"
    )
    rate = "no rate limit" if destination.rate_per_s is None else f"at most {destination.rate_per_s:g}/s"
    cooldown = f"cool-down {_duration(destination.cooldown_ms)}" if destination.cooldown_ms else "no cool-down"
    return f"{kind}, {rate}, {cooldown}, retried for {_duration(destination.retry_window_ms)}"


def _route(route: Route, config: NotifyConfig) -> str:
    criteria = [", ".join(topic for topic in config.topics if topic in route.topics)]
    for label, values in (
        ("model", route.models),
        ("segment", route.segments),
        ("stage", route.stages),
        ("account", route.accounts),
    ):
        if values:
            criteria.append(f"{label} {' or '.join(sorted(values))}")
    if route.min_score is not None:
        criteria.append(f"score >= {route.min_score:g}")
    criteria.extend(f"{'.'.join(path)} in {list(values)}" for path, values in route.where)
    return "; ".join(criteria)


def _duration(millis: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def _run(args: argparse.Namespace) -> int:
    from leadpulse.cli.notify_run import run_command

    return run_command(args.file)


def _redrive(args: argparse.Namespace) -> int:
    from leadpulse.cli.notify_run import redrive_command

    return redrive_command(args.file, args.retry_for)
