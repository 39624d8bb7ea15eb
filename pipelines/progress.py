"""A quiet local run: kfp.local's task output (executor logs, tracebacks, ANSI colours) goes to
the run's log file, and the terminal gets one line per step as it starts and ends. `verbose`
shows everything live instead."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP_LINE = re.compile(
    r"\[mlops\] step (\w+): "
    r"(started|done in ([\d.]+)s|FAILED after ([\d.]+)s|cached from run (\S+))"
)
# Said once per run when steps cannot run in forks of the warm worker (pipelines/warm_worker.py).
_WARM_WORKER_LINE = re.compile(r"\[mlops\] (warm worker .*)")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def _progress_line(match: re.Match[str]) -> str:
    step, what = match.group(1), match.group(2)
    if what == "started":
        return f"  {step:<16} running..."
    if what.startswith("cached"):
        return f"  {step:<16} cached    (from run {match.group(5)})"
    if what.startswith("done"):
        return f"  {step:<16} done      {float(match.group(3)):6.1f}s"
    return f"  {step:<16} FAILED    {float(match.group(4)):6.1f}s"


@contextlib.contextmanager
def quiet_output(log_path: Path, verbose: bool = False) -> Iterator[None]:
    """Send this process's stdout/stderr (and its children's: kfp.local's task processes inherit
    them) to `log_path`; echo a line per step start/end to the real terminal.

    They go through a pipe that a thread copies into the log, rather than to the log file
    itself: when the disk fills up, a write into the log fails, and inside kfp.local (which
    prints each task's output line by line) that would abort the whole orchestration mid-task.
    Here the copy drops what it cannot write and the run goes on to report the step that failed."""
    if verbose:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.dup(1)
    saved_err = os.dup(2)
    reader, writer = os.pipe()
    log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed below, after the copy ends

    def copy() -> None:
        buffer = b""
        while chunk := os.read(reader, 1 << 16):
            with contextlib.suppress(OSError):  # a full disk: the output is lost, not the run
                log.write(chunk)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                text = strip_ansi(line.decode("utf-8", "replace"))
                match = _STEP_LINE.search(text)
                if match:
                    os.write(terminal, (_progress_line(match) + "\n").encode())
                elif warm := _WARM_WORKER_LINE.search(text):
                    os.write(terminal, f"  ({warm.group(1)})\n".encode())

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    os.dup2(writer, 1)
    os.dup2(writer, 2)
    os.close(writer)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os.dup2(terminal, 1)  # closes this process's ends of the pipe: the copy sees its end
        os.dup2(saved_err, 2)
        copier.join(timeout=10)  # a leftover child process may hold the pipe open
        os.close(terminal)
        os.close(saved_err)
        if not copier.is_alive():
            os.close(reader)
            log.close()
