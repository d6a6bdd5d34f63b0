"""Checking an export file before anything is written, on several CPUs at once.

An import (unless atomic) reads and checks its whole file into scratch files before
its first write (:mod:`arquivo.portability.spill`). Parsing and checking is pure Python
and takes about half of an import's time, on one CPU. So a large plain file is cut
into byte ranges at line boundaries, one per CPU (at most 4): this process checks the
first, and a forked process each of the others, into a scratch file of its own; the
writing pass then replays the scratch files in file order. At 400,000 chat messages on
the 2-CPU build machine this made the whole import about a third faster.

Whatever the cut, the outcome is the serial pass's: the ranges' findings are joined in
file order, so the error reported is the first in the file, with its line number
counted from the top; the end line must be the file's last, and its counts are checked
against all the rows. A gzip-compressed file cannot be entered in the middle: it is
first decompressed into an unnamed plain copy in ``TMPDIR`` (gzip's C decoder writes it
in a fraction of the time the check saves), and read by one pass if that copy cannot be
made. A pipe, a small file, one CPU, or a
system without ``fork`` is read by one pass. Fork is used
rather than fresh interpreters because a fresh one would spend a second importing the
library, and the child only parses, checks and writes its scratch file: it touches no
database connection, no lock another thread may hold, and exits without cleaning up
the parent's objects.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import multiprocessing
import os
import shutil
import signal
import stat
import sys
import tempfile
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as connection_wait
from pathlib import Path
from typing import Any, Generic, TypeVar

from arquivo.errors import ArquivoError
from arquivo.portability.codec import TableCodec
from arquivo.portability.fileformat import Progress, ProgressCallback
from arquivo.portability.reading import LineError, Segment
from arquivo.portability.spill import Spill

__all__ = ["Checked", "check_file", "default_jobs"]

P = TypeVar("P")
Batch = tuple[P, list[int], list[tuple[Any, ...]]]

#: The least bytes worth a process of its own (below, forking costs more than it saves).
MIN_RANGE_BYTES = 16 * 2**20
_MAX_JOBS = 4
_GZIP_MAGIC = b"\x1f\x8b"


def default_jobs(path: Path) -> int:
    """How many processes check ``path``: one per CPU and per 16 MiB, at most 4 (of a
    gzip file, its decompressed size)."""
    try:
        size = path.stat().st_size
        if _is_gzip(path) and size >= 4:
            with open(path, "rb") as file:
                file.seek(-4, os.SEEK_END)
                # The gzip trailer's size, modulo 4 GiB: a larger file counts as at least
                # three times its compressed size, no less than an export compresses to.
                size = max(int.from_bytes(file.read(4), "little"), 3 * size)
    except OSError:
        return 1  # the pass itself says what is wrong with the path
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, _MAX_JOBS, size // MIN_RANGE_BYTES))


@dataclass
class Checked(Generic[P]):
    """A file read and checked completely.

    Attributes:
        header: The file's header line.
        counts: Rows per table.
        replay: The checked batches, in file order (each scratch file read once).
    """

    header: dict[str, Any]
    counts: dict[str, int]
    replay: Callable[[], Iterator[Batch[P]]]


@dataclass
class _Outcome:
    """What the pass over one range saw (sent by a child through its pipe)."""

    lines: int = 0
    first_line: int = 0
    last_line: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    end: dict[str, Any] | None = None
    #: Of each plan, in the range's scratch file order: (table, file columns, names).
    plans: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)
    #: The first problem in the range, with its line.
    error: LineError | None = None
    #: Any other failure: (error class, message, hint).
    failure: tuple[type[ArquivoError], str, str] | None = None


Produce = Callable[[Segment], Iterator[Batch[P]]]
#: A plan -> (its table, the columns of the file's rows, the names of its values).
Describe = Callable[[P], tuple[str, tuple[str, ...], tuple[str, ...]]]
#: (table, the file's columns, a line) -> the plan of such rows in this process.
Resolve = Callable[[str, tuple[str, ...], int], P]


def _ranges(path: Path, jobs: int) -> list[tuple[int, int | None]]:
    """Up to ``jobs`` byte ranges of ``path`` cut after a newline (one if compressed)."""
    try:
        status = os.stat(path)
    except OSError:
        return [(0, None)]  # the pass says what is wrong with the path
    # Not a regular file (a pipe): opening it here would take a reader's data.
    if jobs < 2 or not stat.S_ISREG(status.st_mode):
        return [(0, None)]
    if _is_gzip(path):
        return [(0, None)]
    cuts = [0]
    try:
        with open(path, "rb") as file:
            for index in range(1, jobs):
                file.seek(max(status.st_size * index // jobs - 1, 0))
                cut = file.tell() + len(file.readline())
                if cuts[-1] < cut < status.st_size:
                    cuts.append(cut)
    except OSError:
        return [(0, None)]  # unreadable: the pass says so
    return [(start, stop) for start, stop in zip(cuts, [*cuts[1:], None], strict=True)]


def _is_gzip(path: Path) -> bool:
    """Whether ``path`` is a regular file starting as gzip does (a pipe is not opened:
    its first bytes would be taken from its reader)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as file:
            return file.read(2) == _GZIP_MAGIC
    except OSError:
        return False


def _decompressed(path: Path, stack: contextlib.ExitStack) -> Path | None:
    """A plain copy of the gzip file ``path``, which can be cut in ranges; ``None`` if it
    cannot be made (a damaged file, a full disk): the one pass then reads the file, and
    says what is wrong with it.

    The copy is an unnamed file in ``TMPDIR`` (deleted by the kernel however the
    process ends), opened by its ``/proc/self/fd`` path: a forked process inherits the
    descriptor, so the same path opens it there too.
    """
    try:
        copy = stack.enter_context(tempfile.TemporaryFile(prefix="arquivo-import-"))  # noqa: SIM115
        with gzip.open(path, "rb") as source:
            shutil.copyfileobj(source, copy, 4 * 2**20)
        copy.flush()
        name = Path(f"/proc/self/fd/{copy.fileno()}")
        with open(name, "rb"):
            return name
    except (OSError, EOFError, zlib.error):
        return None


def _can_fork() -> bool:
    # Fork is safe here on Linux; macOS's system libraries are not fork-safe.
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def check_file(
    path: Path,
    codecs: dict[str, TableCodec],
    produce: Produce[P],
    describe: Describe[P],
    resolve: Resolve[P],
    *,
    jobs: int,
    progress: ProgressCallback | None,
    stack: contextlib.ExitStack,
    source: Path | None = None,
) -> Checked[P]:
    """Read and check the whole of ``path`` into scratch files, on ``jobs`` processes.

    ``produce`` turns a :class:`Segment`'s rows into checked batches; the scratch files
    (and the plain copy of a gzip-compressed file) are closed by ``stack``. ``source``
    is the file read instead of ``path``, if any.

    Raises:
        ValidationError: The file is malformed (the first problem in the file).
    """
    again = functools.partial(
        check_file, path, codecs, produce, describe, resolve, progress=progress, stack=stack
    )
    parallel = jobs > 1 and _can_fork()
    if source is None and parallel and _is_gzip(path):
        plain = _decompressed(path, stack)
        if plain is not None:
            return again(jobs=jobs, source=plain)
    source = path if source is None else source
    ranges = _ranges(source, jobs) if parallel else [(0, None)]
    spills: list[Spill[P]] = [stack.enter_context(Spill[P]()) for _ in ranges]
    if len(ranges) == 1:
        whole = Segment(path, codecs, progress=progress, source=source)
        for batch in produce(whole):
            spills[0].add(*batch)
        return Checked(whole.header, whole.counts, spills[0].batches)
    first = Segment(path, codecs, stop=ranges[0][1], source=source)
    try:
        children = _Children(first, produce, describe, ranges[1:], spills[1:], progress)
    except OSError:
        # No fork now (out of memory, or the process limit reached): one pass does it.
        return again(jobs=1, source=source)
    try:
        for batch in produce(first):
            spills[0].add(*batch)
        if not first.header:
            # Only blank lines before the cut: the other ranges were read as following
            # a header that is in fact in one of them. Rare enough to read it all again.
            children.stop()
            return again(jobs=1, source=source)
        outcomes = children.wait()
    except BaseException:
        children.stop()
        raise
    own = _Outcome(first.lines, first.first_line, first.last_line, first.counts, first.end)
    counts, offsets = _join(first, [own, *outcomes])

    def replay() -> Iterator[Batch[P]]:
        yield from spills[0].batches()
        for spill, outcome, offset in zip(spills[1:], outcomes, offsets[1:], strict=True):
            yield from _rebased(spill, outcome, offset, describe, resolve)

    return Checked(first.header, counts, replay)


def _join(first: Segment, outcomes: list[_Outcome]) -> tuple[dict[str, int], list[int]]:
    """Check the ranges' findings as the serial pass would: the first problem in the
    file wins. Returns the rows per table and the lines before each range."""
    counts: dict[str, int] = {}
    offsets: list[int] = []
    offset = last_line = 0
    end: dict[str, Any] | None = None
    for outcome in outcomes:
        offsets.append(offset)
        error = outcome.error
        # A line after the end line comes first, unless the range fails before it.
        content = outcome.first_line and (error is None or outcome.first_line <= error.line)
        if end is not None and content:
            line = offset + outcome.first_line
            raise LineError(first.path, line, "there is more after the end line")
        if isinstance(error, LineError):
            raise error.moved(offset)
        if error is not None:
            raise error
        if outcome.failure is not None:
            kind, message, hint = outcome.failure
            raise kind(message, hint=hint)
        for table, done in outcome.counts.items():
            counts[table] = counts.get(table, 0) + done
        if outcome.end is not None:
            end = outcome.end
        if outcome.last_line:
            last_line = offset + outcome.last_line
        offset += outcome.lines
    first.check_complete(first.header, end, counts, last_line)
    return counts, offsets


def _rebased(
    spill: Spill[P], outcome: _Outcome, offset: int, describe: Describe[P], resolve: Resolve[P]
) -> Iterator[Batch[P]]:
    """A child's batches with this process's plans, its values in their order, and line
    numbers counted from the top of the file."""
    plans: list[P] = []
    orders: dict[int, list[int] | None] = {}
    for table, columns, names in outcome.plans:
        plan = resolve(table, columns, offset + 1)
        mine = describe(plan)[2]
        plans.append(plan)
        # Rows with the same columns in another order share this process's plan.
        orders[id(plan)] = None if mine == names else [names.index(name) for name in mine]
    for plan, numbers, rows in spill.batches(plans):
        order = orders[id(plan)]
        if order is not None:
            rows = [tuple([row[i] for i in order]) for row in rows]
        yield plan, [number + offset for number in numbers], rows


class _Children(Generic[P]):
    """The forked processes checking the ranges after the first.

    Args:
        first: The first range's pass: the file, and rows added to the children's.
        ranges: Their byte ranges.
        spills: Their scratch files (opened here, so that both processes hold them).
        progress: Called with the rows of all ranges so far, per table.
    """

    def __init__(
        self,
        first: Segment,
        produce: Produce[P],
        describe: Describe[P],
        ranges: Sequence[tuple[int, int | None]],
        spills: Sequence[Spill[P]],
        progress: ProgressCallback | None,
    ) -> None:
        context = multiprocessing.get_context("fork")
        self._progress = progress
        self._first = first
        self._pipes: list[Connection] = []
        self._processes: list[Any] = []
        self._outcomes: list[_Outcome | None] = [None] * len(ranges)
        self._counts: list[dict[str, int]] = [{} for _ in ranges]
        if progress is not None:
            first.progress = self._report_first
        try:
            for (start, stop), spill in zip(ranges, spills, strict=True):
                self._start(
                    context,
                    Segment(
                        first.path,
                        first.codecs,
                        start=start,
                        stop=stop,
                        after_header=True,
                        source=first.source,
                    ),
                    spill,
                    produce,
                    describe,
                )
        except BaseException:
            self.stop()
            raise

    def _start(
        self,
        context: Any,
        segment: Segment,
        spill: Spill[P],
        produce: Produce[P],
        describe: Describe[P],
    ) -> None:
        receive, send = context.Pipe(duplex=False)
        try:
            process = context.Process(
                target=_child, args=(segment, spill, produce, describe, send), daemon=True
            )
            with warnings.catch_warnings():
                # Python 3.12+ warns of forking a threaded process: see the module's doc.
                warnings.simplefilter("ignore", DeprecationWarning)
                process.start()
        except BaseException:
            receive.close()
            raise
        finally:
            send.close()
        self._pipes.append(receive)
        self._processes.append(process)

    def _report(self, table: str) -> None:
        if self._progress is not None:
            done = self._first.counts.get(table, 0)
            done += sum(counts.get(table, 0) for counts in self._counts)
            self._progress(Progress("validate", table, done, None))

    def _report_first(self, step: Progress) -> None:
        for index, pipe in enumerate(self._pipes):
            while self._outcomes[index] is None and pipe.poll():
                self._receive(index)
        self._report(step.table)

    def _receive(self, index: int) -> None:
        try:
            message = self._pipes[index].recv()
        except EOFError:
            process = self._processes[index]
            process.join()
            self._outcomes[index] = _Outcome(
                failure=(
                    ArquivoError,
                    "a process checking the file ended without a result "
                    f"(exit code {process.exitcode})",
                    "import again; nothing was imported",
                )
            )
            return
        if isinstance(message, _Outcome):
            self._outcomes[index] = message
            return
        table, done = message
        self._counts[index][table] = done
        self._report(table)

    def wait(self) -> list[_Outcome]:
        """Every child's outcome, reporting their progress until they are done."""
        waiting = {
            pipe: index
            for index, pipe in enumerate(self._pipes)
            if self._outcomes[index] is None  # not already received with progress
        }
        while waiting:
            for pipe in connection_wait(list(waiting)):
                index = waiting[pipe]  # type: ignore[index]
                self._receive(index)
                if self._outcomes[index] is not None:
                    del waiting[pipe]  # type: ignore[arg-type]
        for process in self._processes:
            process.join()
        return [outcome or _Outcome() for outcome in self._outcomes]

    def stop(self) -> None:
        """End the children early (the first range failed)."""
        for process in self._processes:
            process.kill()
            process.join()
        for pipe in self._pipes:
            pipe.close()


def _child(
    segment: Segment,
    spill: Spill[Any],
    produce: Produce[Any],
    describe: Describe[Any],
    pipe: Connection,
) -> None:
    """Check one range into its scratch file and send what it saw."""
    # Ctrl-C is the parent's to handle (it ends its children); no traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    segment.progress = lambda step: pipe.send((step.table, step.done))
    outcome = _Outcome()
    try:
        for batch in produce(segment):
            spill.add(*batch)
        spill.flush()
        outcome.plans = [describe(plan) for plan in spill.plans]
    except LineError as exc:
        outcome.error = exc
    except ArquivoError as exc:
        # Sent as parts: an error's pickle keeps its message only, and its class may
        # take other arguments.
        plain = type(exc).__init__ is ArquivoError.__init__
        outcome.failure = (type(exc) if plain else ArquivoError, exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - anything else still reaches the parent
        outcome.failure = (ArquivoError, f"checking the file failed: {exc!r}", "")
    outcome.lines = segment.lines
    outcome.first_line, outcome.last_line = segment.first_line, segment.last_line
    outcome.counts, outcome.end = segment.counts, segment.end
    pipe.send(outcome)
    pipe.close()
