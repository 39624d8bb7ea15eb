"""A quiet local run: kfp.local's task output (executor logs, tracebacks, ANSI colours) goes to
the run's log file, and the terminal gets one line per step as it starts and ends. `verbose`
shows everything live instead."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STEP_LINE = re.compile(
    r"\[mlops\] step (\w+): "
    r"(started|done in ([\d.]+)s|FAILED after ([\d.]+)s|cached from run (\S+))"
)


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
    them) to `log_path`; echo a line per step start/end to the real terminal."""
    if verbose:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.dup(1)
    saved_err = os.dup(2)
    log = open(log_path, "ab")  # noqa: SIM115 - closed below, after the fds are restored
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    done = threading.Event()

    def follow() -> None:
        with open(log_path, "rb") as reader:
            buffer = b""
            while True:
                chunk = reader.read()
                if chunk:
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        match = _STEP_LINE.search(strip_ansi(line.decode("utf-8", "replace")))
                        if match:
                            os.write(terminal, (_progress_line(match) + "\n").encode())
                elif done.is_set():
                    return
                else:
                    time.sleep(0.2)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(terminal, 1)
        os.dup2(saved_err, 2)
        done.set()
        watcher.join(timeout=5)
        os.close(terminal)
        os.close(saved_err)
        log.close()
