"""Runtime helpers for pipeline steps: a step log for the run manifest, and a clean exit for
processes that ran TFT/Beam/TFMA (which can crash the interpreter during teardown)."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def append_step_record(step_log: str, record: dict[str, Any]) -> None:
    path = Path(step_log)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # parallel steps append whole lines
        handle.write(json.dumps(record, default=str) + "\n")


def read_step_log(step_log: str | Path) -> list[dict[str, Any]]:
    """The step records; a line cut short (a full disk, a killed step) is skipped, not fatal."""
    path = Path(step_log)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record and "status" in record:
            records.append(record)
    return records


def run_step(step_log: str, name: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a step function, print its progress and, when `step_log` is set (local runs), record
    status, duration and result (or the error) as one JSON line."""
    started = time.time()
    print(f"[mlops] step {name}: started", flush=True)
    record: dict[str, Any] = {"step": name, "started": started}
    try:
        result = func(*args, **kwargs)
    except BaseException as exc:
        record.update(
            status="FAILED",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(limit=5),
        )
        raise
    else:
        paths = [str(a) for a in args if isinstance(a, str) and os.sep in a]
        record.update(status="SUCCEEDED", result=result, outputs=paths)
        return result
    finally:
        record["duration_s"] = round(time.time() - started, 2)
        if record["status"] == "FAILED":
            print(
                f"[mlops] step {name}: FAILED after {record['duration_s']:.1f}s: {record['error']}",
                flush=True,
            )
        else:
            print(f"[mlops] step {name}: done in {record['duration_s']:.1f}s", flush=True)
        if step_log:
            append_step_record(step_log, record)


_failed = False


def exit_without_teardown() -> None:
    """At interpreter exit, flush and leave with os._exit: status 1 if an exception went
    unhandled, else 0. Skips the native teardown that can segfault after TFT/Beam ran (exit 139
    although every output was written)."""
    if getattr(exit_without_teardown, "_installed", False):
        return
    exit_without_teardown._installed = True  # type: ignore[attr-defined]
    previous_hook = sys.excepthook

    def hook(*exc_info: Any) -> None:
        global _failed
        _failed = True
        previous_hook(*exc_info)

    def leave() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1 if _failed else 0)

    sys.excepthook = hook
    atexit.register(leave)
