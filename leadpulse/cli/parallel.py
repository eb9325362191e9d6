"""`leadpulse score --jobs N`: the offline scorer on N processes, printing exactly what one
process prints.

Contacts are independent except through identity links (an anonymous id's history moves to
the contact that links it; an erasure reaches the ids its contact linked) and accounts
(aggregated from contact snapshots). So:

1. each process reads a slice of the input for the ids every line names, without decoding
   it (`ids_of`); lines naming several ids join them into one group (union-find, here);
   groups hash to `BUCKETS` buckets, which are dealt to the processes by the lines they
   hold (`deal`: one group can be a fifth of the input, cookies shared between people
   chaining contacts together, and a hash alone left one process 50% more lines than the
   other); then it writes, for each line of its slice, the process of its group's bucket
   (`_route`): a line is read for ids once, by one process, not by each;
2. each process reads every line again and folds, with the one-process code, the lines
   routed to it (the routes of every slice, read a chunk at a time beside the lines):
   decoding, validating and scoring, most of the cost, are done once per line, on raw
   bytes (no event crosses a process boundary);
3. the processes print their contacts' records, merged here by contact id; accounts are
   aggregated here from the members each process computed; --events-out lines are merged
   by line number, bad lines reported in line order. Each process writes its records and
   output lines to files of its own, in chunks, and they are merged here as they are
   printed: this process holds a chunk of each, not every record (bench/peak_rss.py).

Hand-over versions are line numbers (`ScoreRun.add`), so they do not depend on which other
contacts a process folded. The routing is checked on every decoded event: a line that names
an id in a way `ids_of` did not see (which valid JSON cannot) would make the run fall back
to one process rather than print something else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import heapq
import io
import itertools
import os
import pickle
import re
import tempfile
import traceback
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import orjson

from leadpulse.cli.offline import (
    Kind,
    Scored,
    Totals,
    account_lines,
    ageing_time,
    contact_records,
    evaluation_time,
    member_filter,
    score_lines,
    score_numbered,
    scored,
)
from leadpulse.schemas.events import InvalidEvent
from leadpulse.schemas.limits import InputLimits
from leadpulse.schemas.outputs import dumps, output_record
from leadpulse.scoring.accounts import account_members, accounts_from
from leadpulse.scoring.engine import Event, linked_ids
from leadpulse.scoring.replay import ScoreRun
from leadpulse.scoring.rules import Rules

Source = Path | bytes  # a file, or stdin read whole (every process reads it all)

ID_FIELDS = ("contact_id", "anonymous_id", "userId", "anonymousId", "previousId")  # native and Segment
# A field named like an id with a string value, wherever it is: a superset of the ids the
# event names (grouping too much is harmless). Without a backslash in the line, every `"` is a
# string's delimiter, so no match can start inside a string.
_ID = re.compile(rb'"(?:contact_id|anonymous_id|userId|anonymousId|previousId)"\s*:\s*"([^"\\]*)"')
_CHUNK = 1_000  # records a process writes at a time, and this one reads at a time
_FIRST = "I"  # array type of the numbers standing for a line's first id (`_links`)
_ROUTE = "H"  # array type of a line's process: up to 65,535 processes
_ROUTES_CHUNK = 1 << 16  # lines whose routes are written, and read, at a time
BUCKETS = 1_024  # what groups hash to; dealt to the processes by their lines (`deal`)


class Misrouted(Exception):
    """An event names an id its line's group does not hold."""


def ids_of(line: bytes) -> list[bytes]:
    """The ids a line may name (UTF-8), found without decoding it unless it has escapes."""
    if b"\\" not in line:
        return _ID.findall(line)
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(document, dict):
        return []
    return [v.encode("utf-8", "surrogatepass") for f in ID_FIELDS if isinstance(v := document.get(f), str)]


def bucket_of(root: bytes) -> int:
    """The bucket of a group, by its representative (a stable hash, not Python's)."""
    return zlib.crc32(root) % BUCKETS


def no_lines() -> array[int]:
    """Lines by bucket, none yet."""
    return array("q", bytes(8 * BUCKETS))


def deal(loads: Sequence[int], jobs: int) -> tuple[int, ...]:
    """The process of each bucket: the heaviest bucket first, each to the process with the
    fewest lines so far (the lowest-numbered among equals), so that the processes end close
    together unless one bucket outweighs a process's share."""
    dealt = [0] * len(loads)
    lines = [(0, process) for process in range(jobs)]  # a heap of (lines so far, process)
    for bucket in sorted(range(len(loads)), key=lambda index: -loads[index]):
        held, process = heapq.heappop(lines)
        dealt[bucket] = process
        heapq.heappush(lines, (held + loads[bucket], process))
    return tuple(dealt)


def groups(links: Iterable[Sequence[bytes]]) -> dict[bytes, bytes]:
    """Each id named together with another -> its group's representative (union-find)."""
    parent: dict[bytes, bytes] = {}

    def find(node: bytes) -> bytes:
        root = node
        while (up := parent.setdefault(root, root)) != root:
            root = up
        while node != root:
            parent[node], node = root, parent[node]
        return root

    for ids in links:
        first = find(ids[0])
        for other in ids[1:]:
            root = find(other)
            if root != first:
                parent[root] = first
    return {node: find(node) for node in parent}


@dataclass(frozen=True)
class Router:
    """Which process folds a line: the one its group's bucket was dealt to."""

    roots: dict[bytes, bytes]
    owners: tuple[int, ...]  # by bucket (`deal`)

    def owner(self, node: bytes) -> int:
        """The process that folds the lines naming `node`."""
        return self.owners[bucket_of(self.roots.get(node, node))]

    def check(self, me: int) -> Callable[[Event], None]:
        known: set[str] = set()  # contact ids found routed here: bounded by this process's contacts

        def check(event: Event) -> None:
            contact_id, anonymous = event.contact_id, event.anonymous_id
            if contact_id in known and (anonymous is None or anonymous == contact_id) and event.previous_id is None:
                return  # routed here before, and names no other id: it links nothing (linked_ids)
            key = contact_id.encode("utf-8", "surrogatepass")
            root = self.roots.get(key, key)
            if self.owners[bucket_of(root)] != me or any(
                self.roots.get(other, other) != root
                for other in (i.encode("utf-8", "surrogatepass") for i in linked_ids(event))
            ):
                raise Misrouted(event.event_id)
            known.add(contact_id)

        return check


@dataclass(frozen=True)
class Options:
    rules: Rules
    now_ms: int  # refuse events ahead of it (offline.future_reference)
    limits: InputLimits
    kind: Kind
    at_ms: int | None
    last_event: bool
    with_outputs: bool


@dataclass(frozen=True)
class Folded:
    """One process's run, before its records: what the evaluation time and the bad lines need."""

    latest_ms: int | None
    bad: list[tuple[int, str, str]]  # line number, field, reason


@dataclass(frozen=True)
class Printed:
    """Where a process writes what it prints, in chunks (`write_chunks`), read back here (`read_chunks`):
    files made here before it is forked (removed already: gone once closed)."""

    records: BinaryIO  # (contact id, line) by contact id; --accounts: (account id, member) by contact id
    outputs: BinaryIO  # (line number, line), in processing order

    @classmethod
    def new(cls) -> Printed:
        return cls(tempfile.TemporaryFile(), tempfile.TemporaryFile())  # closed by _read, or close

    def close(self) -> None:
        self.records.close()
        self.outputs.close()


def score_parallel(
    source: Source,
    options: Options,
    jobs: int,
    on_bad: Callable[[int, InvalidEvent], None],
    label: str = "scoring",
) -> Scored:
    """Score `source` on `jobs` processes; the same records, outputs, summary and bad lines
    as one process (falls back to one if an event was misrouted, see the module's doc)."""
    shares = [_ScoreShare(options, Printed.new()) for _ in range(jobs)]

    def times(parts: list[Any]) -> tuple[int | None, int | None]:
        latest = max((part.latest_ms for part in parts if part.latest_ms is not None), default=None)
        return evaluation_time(options.at_ms, options.last_event, latest), ageing_time(options.at_ms, latest)

    try:
        routed = run_routed(source, shares, times, label)
    except BaseException:
        for share in shares:
            share.printed.close()
        raise
    if routed is None:
        for share in shares:
            share.printed.close()
        return _one_process(source, options, on_bad)
    parts, finished = routed
    for number, at_fault, reason in sorted(bad for part in parts for bad in part.bad):
        on_bad(number, InvalidEvent(at_fault, reason))
    totals = sum(finished, Totals())  # each process's, once its expired contacts are deleted (ScoreRun.age)
    printed = [share.printed for share in shares]
    return Scored(_records(printed, options), _outputs(printed), totals)


class Share(Protocol):
    """One process's part of a routed run (`run_routed`): made before the processes are
    forked (each gets a copy of its own), used only in its process."""

    def fold(self, lines: Iterator[tuple[int, bytes]], check: Callable[[Event], None]) -> Any:
        """Fold the (number, line) pairs routed here, calling `check` on each decoded event
        (it raises Misrouted); returns what the parent needs to decide the next step."""

    def finish(self, message: Any) -> Any:
        """The next step, with what the parent decided from every process's `fold`."""


def run_routed(
    source: Source, shares: Sequence[Share], decide: Callable[[list[Any]], Any], label: str
) -> tuple[list[Any], list[Any]] | None:
    """Route the lines of `source` to one process per share (steps 1 and 2 of the module's
    doc), fold each share's lines in its process, then finish each with what `decide` made
    of all their folds. Returns (folds, finishes) by share, or None when an event was
    misrouted (the caller runs one process instead)."""
    jobs = len(shares)
    context = get_context("fork")  # the workers share the rules and a stdin copy, unpickled
    total = _size(source)
    spans = _spans(source, total, jobs)
    progress = context.Array("q", jobs, lock=False)
    connections: list[Connection] = []
    processes = []
    with contextlib.ExitStack() as files:
        routes = [files.enter_context(tempfile.TemporaryFile()) for _ in range(jobs)]  # removed already
        try:
            for me in range(jobs):
                ours, theirs = context.Pipe()
                task = _Task(source, spans, me, routes, shares[me])
                process = context.Process(target=_work, args=(theirs, task, progress), daemon=True)
                process.start()
                theirs.close()
                connections.append(ours)
                processes.append(process)
            links = [ids for connection in connections for ids in _receive(connection)]
            roots = groups(links)
            for connection in connections:
                send(connection, roots)
            loads = no_lines()
            for connection in connections:
                for bucket, lines in enumerate(_receive(connection)):  # its slice's
                    loads[bucket] += lines
            owners = deal(loads, jobs)
            for connection in connections:
                send(connection, owners)
            for connection in connections:
                _receive(connection)  # its slice's routes are written
            for connection in connections:
                send(connection, None)  # every slice's are: fold
            folded = _gather(connections, lambda: min(progress), total, label)
            if any(part is None for part in folded):
                return None
            message = decide(folded)
            for connection in connections:
                send(connection, message)
            return folded, [_receive(connection) for connection in connections]
        finally:
            for connection in connections:
                connection.close()  # a process still waiting for its next step ends
            for process in processes:
                process.join(timeout=5)
                if process.is_alive():
                    process.terminate()
                    process.join()


def _records(printed: list[Printed], options: Options) -> Iterable[bytes]:
    each = [read_chunks(files.records) for files in printed]
    if options.kind == "accounts":
        members = heapq.merge(*each, key=lambda pair: pair[1].contact_id)
        admit = member_filter(options.rules, options.limits)
        return account_lines(accounts_from(((a, m) for a, m in members if admit(a, m)), options.rules))
    return (line for _, line in heapq.merge(*each, key=itemgetter(0)))


def _outputs(printed: list[Printed]) -> Iterable[bytes]:
    # every output of a line comes from the process that folded it, in its order: stable merge
    return (line for _, line in heapq.merge(*(read_chunks(files.outputs) for files in printed), key=itemgetter(0)))


def write_chunks(items: Iterable[Any], file: BinaryIO) -> None:
    """`items` into `file` as pickled chunks of `_CHUNK`: a process holds one chunk at a time."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, _CHUNK)):
        _Pickler(file, protocol=pickle.HIGHEST_PROTOCOL).dump(chunk)
    file.flush()


class _Pickler(pickle.Pickler):
    """Dataclasses pickled as their constructor's arguments: a frozen dataclass of the compiled
    core (a mypyc native class, docs/compiled.md) has no `__dict__`, and pickle's default
    rebuilds it by setting each attribute, which a frozen class refuses."""

    def reducer_override(self, obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return type(obj), tuple(getattr(obj, field.name) for field in dataclasses.fields(obj) if field.init)
        return NotImplemented


def send(connection: Connection, message: Any) -> None:
    """`connection.send` through `_Pickler`; the other end reads it with `_read`."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    connection.send_bytes(buffer.getbuffer())


def _read(connection: Connection) -> Any:
    """What `send` sent on the other end of `connection`."""
    return pickle.loads(connection.recv_bytes())


def read_chunks(file: BinaryIO) -> Iterator[Any]:
    """The items `write_chunks` wrote to `file`, a chunk at a time; closes it at the end."""
    with file:
        file.seek(0)
        while True:
            try:
                chunk = pickle.load(file)
            except EOFError:
                return
            yield from chunk


def _one_process(source: Source, options: Options, on_bad: Callable[[int, InvalidEvent], None]) -> Scored:
    with _open(source) as stream:
        run = score_lines(stream, options.rules, now_ms=options.now_ms, limits=options.limits, on_bad=on_bad)
    return scored(run, options.kind, options.at_ms, options.last_event)


def _gather(connections: list[Connection], done: Callable[[], int], total: int, label: str) -> list[Folded | None]:
    """Each process's `Folded` (None: it met a misrouted event), with a progress bar."""
    from tqdm import tqdm

    results: dict[int, Folded | None] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None, mininterval=0.5) as bar:
        while len(results) < len(connections):
            pending = [c for i, c in enumerate(connections) if i not in results]
            for ready in wait(pending, timeout=0.5):
                index = connections.index(ready)  # type: ignore[arg-type]
                results[index] = _receive(connections[index])
            bar.update(done() - bar.n)
    return [results[index] for index in range(len(connections))]


def _receive(connection: Connection) -> Any:
    try:
        message = _read(connection)
    except EOFError:
        raise RuntimeError("a scoring process ended without its results") from None
    if isinstance(message, _Failure):
        raise RuntimeError(f"a scoring process failed:\n{message.trace}")
    return message


@dataclass(frozen=True)
class _Failure:
    trace: str


@dataclass(frozen=True)
class _Task:
    source: Source
    spans: list[tuple[int, int]]  # each process's slice of the input: it reads its slice's ids
    me: int  # the lines it folds: those the router gives it
    routes: Sequence[BinaryIO]  # by slice: the process that folds each line of it, `_ROUTE` items
    share: Share


def _work(connection: Connection, task: _Task, progress: Any) -> None:
    """One process: the ids of its slice, the routes of its lines, then its share's fold,
    then its finish.

    Without the cyclic garbage collector: contact states hold no reference cycles (the
    refcount frees what a fold drops; tests/unit/test_offline_gc.py checks it), and
    collections would walk every live state over and over (bench/README.md, the offline
    scorer). The process ends after its finish."""
    gc.disable()
    source, me = task.source, task.me
    try:
        with tempfile.TemporaryFile() as firsts:
            links, named, lines = _links(_slice(source, task.spans[me]), firsts)
            send(connection, links)
            roots: dict[bytes, bytes] = _read(connection)
            loads = no_lines()
            for node, count in zip(named, lines, strict=True):
                loads[bucket_of(roots.get(node, node))] += count
            send(connection, loads)
            router = Router(roots, _read(connection))
            _route(firsts, named, router, me, task.routes[me])
            del named, lines
        send(connection, None)
        _read(connection)  # every slice's routes are written
        try:
            with _open(source) as stream:
                marks = _marks(task.routes, stream, me, progress)
                folded = task.share.fold(itertools.compress(enumerate(stream, start=1), marks), router.check(me))
                if next(marks, None) is not None or stream.read(1):
                    raise RuntimeError("the routes and the lines of the input are out of step")
        except Misrouted:
            send(connection, None)
            return
        send(connection, folded)
        send(connection, task.share.finish(_read(connection)))
    except EOFError:
        pass  # the parent has what it needs (or stopped)
    except BaseException:  # reported to the parent, which raises it
        with contextlib.suppress(OSError):
            send(connection, _Failure(traceback.format_exc()))


def _slice(source: Source, span: tuple[int, int]) -> Iterator[bytes]:
    """The lines of `span` (it starts at a line's start, and ends at one or at the end)."""
    with _open(source) as stream:
        stream.seek(span[0])
        left = span[1] - span[0]
        for line in stream:
            if left <= 0:
                return
            left -= len(line)
            yield line


def _links(lines: Iterable[bytes], firsts: BinaryIO) -> tuple[list[list[bytes]], list[bytes], array[int]]:
    """The ids of each line naming several, the first id each line names, in order of first
    appearance, and how many lines each of those is the first of; into `firsts`, for each
    line, its first id's place in that order counting from 1, or 0 for a line naming none
    (`_route`: a line's ids share a group, so any one of them routes it). What this holds is
    bounded by the ids; what it writes, a `_FIRST` item a line, by the lines."""
    links: list[list[bytes]] = []
    numbers: dict[bytes, int] = {}
    counts = array("q", [0])  # by number (from 1)
    chunk = array(_FIRST)
    for line in lines:
        ids = ids_of(line)
        if not ids:
            chunk.append(0)
            continue
        number = numbers.get(first := ids[0])
        if number is None:
            number = numbers[first] = len(numbers) + 1
            counts.append(0)
        counts[number] += 1
        chunk.append(number)
        if len(ids) > 1 and len(set(ids)) > 1:
            links.append(ids)
        if len(chunk) >= _ROUTES_CHUNK:
            chunk.tofile(firsts)
            del chunk[:]
    chunk.tofile(firsts)
    return links, list(numbers), counts[1:]


def _route(firsts: BinaryIO, named: list[bytes], router: Router, me: int, routes: BinaryIO) -> None:
    """Into `routes`, for each line `_links` read, the process that folds it: its first id's
    (`named`), or this one for a line naming no id (a bad line: this process reports it)."""
    owners = array(_ROUTE, [me, *map(router.owner, named)])
    firsts.seek(0)
    while chunk := firsts.read(_ROUTES_CHUNK * array(_FIRST).itemsize):
        array(_ROUTE, map(owners.__getitem__, array(_FIRST, chunk))).tofile(routes)
    routes.flush()


def _marks(routes: Sequence[BinaryIO], stream: BinaryIO, me: int, progress: Any) -> Iterator[bool]:
    """For each line of the input in order, whether this process folds it, read from each
    slice's routes a chunk at a time (nothing per line here runs Python code); `progress`
    hears of the bytes read at each chunk."""

    def chunks() -> Iterator[Iterator[bool]]:
        for file in routes:
            offset = 0  # the file's own offset is shared with the process that wrote it
            while chunk := os.pread(file.fileno(), _ROUTES_CHUNK * array(_ROUTE).itemsize, offset):
                offset += len(chunk)
                progress[me] = stream.tell()
                yield map(me.__eq__, array(_ROUTE, chunk))
        progress[me] = stream.tell()

    return itertools.chain.from_iterable(chunks())


@dataclass
class _ScoreShare:
    """`leadpulse score`'s share: the one-process fold of its lines, then its records printed."""

    options: Options
    printed: Printed  # where it writes its records and outputs
    run: ScoreRun | None = None
    tags: list[int] = field(default_factory=list)  # the line number of each output printed (--events-out)

    def fold(self, lines: Iterator[tuple[int, bytes]], check: Callable[[Event], None]) -> Folded:
        options = self.options
        run = self.run = ScoreRun(options.rules, keep_outputs=options.with_outputs)
        bad: list[tuple[int, str, str]] = []
        score_numbered(
            run,
            self._tagged(lines, run) if options.with_outputs else lines,
            now_ms=options.now_ms,
            limits=options.limits,
            on_bad=lambda number, error: bad.append((number, error.field, error.reason)),
            check=check,
        )
        return Folded(run.latest_ms, bad)

    def _tagged(self, lines: Iterator[tuple[int, bytes]], run: ScoreRun) -> Iterator[tuple[int, bytes]]:
        """Notes which line each output came from (an output is added while its line is
        being folded, before the next one is asked for)."""
        tags = self.tags
        for number, line in lines:
            yield number, line
            tags.extend([number] * (len(run.outputs) - len(tags)))

    def finish(self, message: tuple[int | None, int | None]) -> Totals:
        evaluate_at, aged_at = message
        run = self.run
        assert run is not None  # folded first
        run.age(aged_at)
        _print(run, self.options, evaluate_at, self.tags, self.printed)
        return Totals.of(run)


def _print(run: ScoreRun, options: Options, evaluate_at: int | None, tags: list[int], printed: Printed) -> None:
    records: Iterable[tuple[str, Any]]
    if options.kind == "accounts":
        published = run.published()
        snapshots = run.snapshots(evaluate_at)
        records = account_members(zip(published, snapshots, strict=True), options.rules)
    else:
        records = contact_records(run, options.kind, evaluate_at)
    write_chunks(records, printed.records)
    if options.with_outputs:
        lines = ((tag, dumps(output_record(output))) for tag, output in zip(tags, run.outputs, strict=True))
        write_chunks(lines, printed.outputs)


def _open(source: Source) -> BinaryIO:
    return source.open("rb") if isinstance(source, Path) else io.BytesIO(source)


def _size(source: Source) -> int:
    return source.stat().st_size if isinstance(source, Path) else len(source)


def _spans(source: Source, total: int, jobs: int) -> list[tuple[int, int]]:
    """`jobs` byte ranges covering the input, each starting at a line's start."""
    starts = [0]
    with _open(source) as stream:
        for index in range(1, jobs):
            stream.seek(max(starts[-1], total * index // jobs))
            stream.readline()
            starts.append(min(stream.tell(), total))
    return list(zip(starts, [*starts[1:], total], strict=True))


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
