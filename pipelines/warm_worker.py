"""A warm worker for local runs: the libraries every step imports are imported once per run, and
each task runs in a fork of the process that holds them.

kfp.local's SubprocessRunner (2.17) runs each task as `sh -ec <launcher> <component source>
--executor_input <json> --function_to_execute <name>`: the launcher writes the source to
`$(mktemp -d)/ephemeral_component.py` and runs `_KFP_RUNTIME=true python3 -m
kfp.dsl.executor_main --component_module_path <that file> ...`. A fresh interpreter per task pays
Python's start-up and the imports of TensorFlow, TFT, TFMA and Beam again (about half a minute on
2 cores), for every step.

`warm_tasks()` starts one worker process per run that imports them (`PRELOAD`) and waits. kfp
hands each task's command to `subprocess_task_handler.run_local_subprocess` (the one place it
launches a task); inside `warm_tasks()` that is `WarmLauncher`, which checks that the command is
exactly kfp's launcher script, and asks the worker to fork: the fork does what the script does
(the source into a fresh temporary folder, `python -m kfp.dsl.executor_main` with the same
arguments, `_KFP_RUNTIME=true` and the task's environment and working directory), so the task
receives its executor input and writes its outputs and executor output as before. Its stdout and
stderr go into a pipe that the launcher copies line by line into this process's stdout, as kfp
does with a subprocess's output; its exit status (a signal included) is the task's.

The worker only imports: it runs no TensorFlow op and starts no Beam pipeline or gRPC channel, so
a fork starts with no TensorFlow or gRPC state to inherit (fork after running them is not safe).
A command that is not kfp's lightweight launcher runs through kfp's own subprocess launch; so does
every task once the worker is found unavailable (an import error, a crash), with one line saying
so. A task whose worker died while it ran fails (its exit status is lost, so it must not count as
done).

Signals behave as for subprocesses: the worker and its forks stay in the run's process group
(a SIGKILL to the group ends them all); Ctrl-C reaches the running task (the worker itself
ignores SIGINT and leaves when the run closes its control socket, or the run's process dies).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# What the steps' processes import, in the order the steps need it: kfp's executor (every task),
# the first steps' modules, then TensorFlow, Keras and TFT (`keras` before `tensorflow_transform`,
# as the train step imports them: TFT otherwise switches tf.keras to Keras 2) for transform and
# train, then TFMA for evaluate, then the other step modules. A step forks as soon as what it
# needs is imported (STEP_NEEDS), while the worker goes on importing for the later steps.
PRELOAD = (
    "kfp.dsl.executor_main",
    "components.ingest",
    "components.find_champion",
    "apache_beam",
    "components.validate",
    "keras",
    "tensorflow",
    "tensorflow_transform",
    "tensorflow_transform.beam",
    "components.transform",
    "components.train",
    "tensorflow_model_analysis",
    "components.evaluate",
    "components.explain",
    "components.register",
    "components.report",
    "google_cloud_pipeline_components.types.artifact_types",
    "components.tune",
    "components.deploy",
    "components.batch_predict",
    "components.monitor",
    "components.launch_training",
)
# How long a task waits for the worker to start it (its imports) before running as a subprocess.
READY_TIMEOUT_S = 600.0
EXECUTOR_MODULE = "kfp.dsl.executor_main"
_READY = b"R"
_FAILED = b"F"


class WorkerUnavailable(RuntimeError):
    """The worker cannot take a task (it did not start, or it is gone)."""


@dataclass(frozen=True)
class TaskCommand:
    """A kfp.local lightweight-component task: the component's source and the executor's
    arguments (`--executor_input ... --function_to_execute ...`)."""

    source: str
    arguments: list[str]


@functools.lru_cache(maxsize=4)
def _launcher_script(executable: str) -> str:
    """kfp's own launcher script (from the kfp installed here), with its interpreter replaced
    the way our runner replaces it."""
    from kfp.dsl import component_factory

    def probe() -> None:
        pass

    command, _ = component_factory._get_command_and_args_for_lightweight_component(probe)
    return command[2].replace("python3", executable)


def parse_task_command(full_command: Sequence[str], executable: str) -> TaskCommand | None:
    """The task in `full_command` if it is exactly kfp's lightweight launcher (`sh -ec <script>
    <source> <args>`) running `executable`; None for anything else (it then runs as kfp runs
    it)."""
    if len(full_command) < 4 or list(full_command[:2]) != ["sh", "-ec"]:
        return None
    if full_command[2] != _launcher_script(executable):
        return None
    return TaskCommand(source=full_command[3], arguments=list(full_command[4:]))


def _exit_code(status: int) -> int:
    """A wait status as subprocess reports it: the exit code, or minus the signal."""
    return os.waitstatus_to_exitcode(status)


class WarmWorker:
    """The run's side of one worker process (see the module docstring)."""

    def __init__(self, process: subprocess.Popen, control: socket.socket) -> None:
        self.process = process
        self.pid = process.pid
        self._control = control
        self._lock = threading.Lock()
        self._ready: bool | None = None
        self._error = ""

    @classmethod
    def start(cls, preload: Sequence[str] = PRELOAD) -> WarmWorker:
        """Start the worker; it imports `preload` in the background (the run goes on)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "pipelines.warm_worker", str(theirs.fileno()), *preload],
                pass_fds=(theirs.fileno(),),
                cwd=os.getcwd(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours)

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the worker is up (kfp's executor imported; the rest follows while tasks
        run); WorkerUnavailable if it failed."""
        with self._lock:
            if self._ready is None:
                self._ready, self._error = self._read_ready(timeout)
        if not self._ready:
            raise WorkerUnavailable(self._error)

    def _read_ready(self, timeout: float) -> tuple[bool, str]:
        self._control.settimeout(timeout)
        try:
            head = self._control.recv(1)
            if head == _READY:
                return True, ""
            message = b""
            while head == _FAILED and (chunk := self._control.recv(4096)):
                message += chunk
            reason = message.decode("utf-8", "replace").strip()
            return False, reason or f"it exited with status {self.process.wait(timeout=30)}"
        except TimeoutError:
            return False, f"its imports took longer than {timeout:.0f}s"
        except OSError as exc:
            return False, f"{type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(OSError):
                self._control.settimeout(None)

    def run(self, task: TaskCommand, env: dict[str, str], cwd: str) -> int:
        """Run `task` in a fork of the worker; its output is printed line by line (as kfp
        prints a task subprocess's output); returns its exit code (minus the signal that ended
        it). WorkerUnavailable if the worker could not start the task (nothing ran)."""
        self.wait_ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader, writer = os.pipe()
        try:
            with self._lock:
                socket.send_fds(self._control, [b"T"], [theirs.fileno(), writer])
            theirs.close()
            os.close(writer)
            request = {
                "source": task.source,
                "arguments": task.arguments,
                "env": env,
                "cwd": cwd,
            }
            ours.sendall(json.dumps(request).encode())
            ours.shutdown(socket.SHUT_WR)
            answer = ours.makefile("rb")
            ours.settimeout(READY_TIMEOUT_S)  # a task waits for the imports it needs
            started = answer.readline()
            ours.settimeout(None)
            if not started.startswith(b"P"):
                raise WorkerUnavailable(
                    "it did not start the task"
                    + (f": {started[1:].decode(errors='replace').strip()}" if started else "")
                )
        except OSError as exc:
            os.close(reader)
            ours.close()
            raise WorkerUnavailable(f"{type(exc).__name__}: {exc}") from None
        except WorkerUnavailable:
            os.close(reader)
            ours.close()
            raise
        with ours, answer, open(reader, encoding="utf-8", errors="replace") as output:
            for line in iter(output.readline, ""):
                print(line, end="")
            print("\n")  # as kfp.local does after a task's output
            finished = answer.readline()
        if not finished.startswith(b"S"):
            # The task ran, but its status was lost with the worker: it must not count as done.
            pid = started[1:].decode(errors="replace").strip()
            print(f"[mlops] warm worker lost during the task (its process {pid}): the task fails")
            return 1
        return _exit_code(int(finished[1:]))

    def close(self, timeout: float = 30.0) -> None:
        """End the worker (tasks still running are left to finish, as subprocesses are)."""
        with contextlib.suppress(OSError):
            self._control.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WarmLauncher:
    """Stands in for `kfp.local.subprocess_task_handler.run_local_subprocess`: a lightweight
    task runs in a fork of the worker, anything else (or every task, once the worker is found
    unavailable) as a subprocess through `fallback` (kfp's own launch)."""

    def __init__(self, worker: WarmWorker | None, fallback: Callable[..., int], reason: str = ""):
        self.worker = worker
        self.fallback = fallback
        self.forked_tasks = 0
        self._lock = threading.Lock()
        self._gave_up = False
        if worker is None:
            self._give_up(reason)

    def _give_up(self, reason: str) -> None:
        """From now on every task runs as a subprocess; says so once."""
        with self._lock:
            self.worker = None
            if self._gave_up:
                return
            self._gave_up = True
        print(
            f"[mlops] warm worker unavailable ({reason}): each step runs in its own process",
            flush=True,
        )

    def __call__(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        worker = self.worker
        task = parse_task_command(full_command, sys.executable) if worker else None
        if worker is None or task is None:
            return self.fallback(full_command=full_command, env_vars=env_vars)
        # The environment kfp gives a subprocess, plus what the launcher script sets.
        env = {**os.environ, **(env_vars or {}), "_KFP_RUNTIME": "true"}
        try:
            code = worker.run(task, env, os.getcwd())
        except WorkerUnavailable as exc:
            self._give_up(str(exc))
            return self.fallback(full_command=full_command, env_vars=env_vars)
        with self._lock:
            self.forked_tasks += 1
        return code


@contextlib.contextmanager
def warm_tasks(
    enabled: bool = True, preload: Sequence[str] = PRELOAD
) -> Iterator[WarmLauncher | None]:
    """Within this context kfp.local's SubprocessRunner runs lightweight tasks in forks of one
    warm worker (started here, its imports running meanwhile); kfp's own launch is restored
    after. `enabled=False` changes nothing."""
    if not enabled:
        yield None
        return
    from kfp.local import subprocess_task_handler

    original = subprocess_task_handler.run_local_subprocess
    try:
        worker: WarmWorker | None = WarmWorker.start(preload)
        reason = ""
    except OSError as exc:
        worker, reason = None, f"{type(exc).__name__}: {exc}"
    launcher = WarmLauncher(worker, original, reason)
    subprocess_task_handler.run_local_subprocess = launcher
    try:
        yield launcher
    finally:
        subprocess_task_handler.run_local_subprocess = original
        if worker is not None:
            worker.close()


# ---- the worker process -------------------------------------------------------------------

# The last module of PRELOAD each step (its KFP function in components/ops.py) needs: it forks as
# soon as that one is imported, beside the worker's later imports, so on 2 cores the first steps
# run while TensorFlow is imported and transform while TFMA is. Any other task waits for the
# whole list (a fork before that might import TensorFlow again, beside the worker).
STEP_NEEDS = {
    "ingest": "components.ingest",
    "find_champion_local": "components.find_champion",
    "validate_data": "components.validate",
    "transform": "components.transform",
    "train": "components.train",
    "evaluate": "components.evaluate",
    "explain": "components.explain",
    "register_local": "components.register",
    "report": "components.report",
}


def _needed(request: dict[str, Any], preload: Sequence[str]) -> int:
    """How many of `preload` must be imported before this task forks."""
    arguments = request["arguments"]
    function = ""
    if "--function_to_execute" in arguments[:-1]:
        function = arguments[arguments.index("--function_to_execute") + 1]
    module = STEP_NEEDS.get(function)
    return preload.index(module) + 1 if module in preload else len(preload)


class _Imports:
    """The worker's imports, one module at a time between requests; what they did to the
    environment (a fresh step process gets the same changes from the same imports) and the root
    logger as it was before them (restored in each task, so its executor configures logging as
    in a fresh process)."""

    def __init__(self, modules: Sequence[str]) -> None:
        import logging

        self.modules = list(modules)
        self.done = 0
        self.error = ""
        self._environ = dict(os.environ)
        self.root_handlers = list(logging.root.handlers)
        self.root_level = logging.root.level

    @property
    def finished(self) -> bool:
        return self.done == len(self.modules) or bool(self.error)

    def next(self) -> None:
        import importlib

        name = self.modules[self.done]
        try:
            importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - reported to the run, which falls back
            self.error = f"import of {name} failed: {type(exc).__name__}: {exc}"
            return
        self.done += 1

    def environ_changes(self) -> dict[str, str | None]:
        """{name: value, or None for removed} since the worker started."""
        changes: dict[str, str | None] = {
            key: value for key, value in os.environ.items() if self._environ.get(key) != value
        }
        changes.update({key: None for key in self._environ if key not in os.environ})
        return changes


def _read_request(task: socket.socket) -> dict[str, Any]:
    task.settimeout(60)
    data = b""
    while chunk := task.recv(1 << 16):
        data += chunk
    task.settimeout(None)
    return json.loads(data)


def _task_environment(request_env: dict[str, str], import_changes: dict[str, str | None]):
    env = dict(request_env)
    for key, value in import_changes.items():
        if key in request_env:
            continue  # the task's own value wins, as a fresh process's imports mostly let it
        if value is not None:
            env[key] = value
    return env


def _run_task(request: dict[str, Any], imports: _Imports) -> int:
    """In the fork: what kfp's launcher script does, then `python -m kfp.dsl.executor_main`."""
    import atexit
    import logging
    import runpy
    import tempfile

    logging.root.handlers[:] = imports.root_handlers
    logging.root.setLevel(imports.root_level)
    os.chdir(request["cwd"])
    env = _task_environment(request["env"], imports.environ_changes())
    os.environ.clear()
    os.environ.update(env)
    tempfile.tempdir = None  # from the task's TMPDIR
    sys.path[0] = request["cwd"]  # `python -m` puts its working directory first
    if "numpy" in sys.modules:  # a fresh process seeds numpy's global generator from the OS
        sys.modules["numpy"].random.seed()
    program_path = tempfile.mkdtemp()
    module_path = os.path.join(program_path, "ephemeral_component.py")
    with open(module_path, "w") as handle:
        handle.write(request["source"])
    sys.argv = ["-m", "--component_module_path", module_path, *request["arguments"]]
    code = 0
    try:
        runpy.run_module(EXECUTOR_MODULE, run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # as the interpreter turns SystemExit into an exit status
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # What the interpreter does on its way out, up to its native teardown (which os._exit skips,
    # as `mlops.steps.exit_without_teardown` does for steps that ran TFT/Beam).
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    return code


@dataclass
class _Request:
    task: socket.socket
    out_fd: int
    body: dict[str, Any]
    needed: int


def _fork_task(request: _Request, keep_closed: list[int], imports: _Imports) -> int:
    """Fork the task (the child never returns) and tell the run its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for fd in [*keep_closed, request.task.fileno()]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            os.dup2(request.out_fd, 1)
            os.dup2(request.out_fd, 2)
            os.close(request.out_fd)
            code = _run_task(request.body, imports)
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(request.out_fd)
    with contextlib.suppress(OSError):
        request.task.sendall(f"P{pid}\n".encode())
    return pid


def _refuse(request: _Request, reason: str) -> None:
    """The task was not started: the run falls back to a subprocess for it."""
    with contextlib.suppress(OSError):
        request.task.sendall(b"E" + reason.encode() + b"\n")
    request.task.close()
    os.close(request.out_fd)


def _abandoned(request: _Request) -> bool:
    poller = select.poll()
    poller.register(request.task, select.POLLHUP)
    return any(event & select.POLLHUP for _, event in poller.poll(0))


def _receive(control: socket.socket, preload: Sequence[str]) -> _Request | None | bool:
    """The next request on the control socket; False when the run closed it."""
    try:
        message, fds, _, _ = socket.recv_fds(control, 16, 2)
    except OSError:
        return False
    if not message:
        return False
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return None
    task = socket.socket(fileno=fds[0])
    request = _Request(task, fds[1], {}, len(preload))
    try:
        request.body = _read_request(task)
        request.needed = _needed(request.body, preload)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _refuse(request, f"unreadable request: {exc}")
        return None
    return request


def serve(control_fd: int, preload: Sequence[str]) -> int:
    """The worker: import `preload` one module at a time, forking each task as soon as the
    modules it needs are in (`STEP_NEEDS`; the others wait for all), until the run closes the
    control socket (or dies). Tasks still running then are left to finish on their own, as
    orphaned task subprocesses do."""
    control = socket.socket(fileno=control_fd)
    imports = _Imports(preload)
    if preload and preload[0] == EXECUTOR_MODULE:
        imports.next()  # every task needs it
    if imports.error:
        with contextlib.suppress(OSError):
            control.sendall(_FAILED + imports.error.encode())
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the tasks and the run
    children = _Children()
    # A task's status goes to the run as soon as it ends, also while a long import runs (Python
    # calls the handler between bytecodes); no system call is cut short by it (SA_RESTART).
    signal.signal(signal.SIGCHLD, lambda *_: children.reap())
    signal.siginterrupt(signal.SIGCHLD, False)
    control.sendall(_READY)
    waiting: list[_Request] = []
    while True:
        timeout = 5.0 if imports.finished else 0.0
        ready, _, _ = select.select([control], [], [], timeout)
        if ready:
            request = _receive(control, preload)
            if request is False:
                break
            if request:
                waiting.append(request)
        for request in list(waiting):
            if imports.error:
                _refuse(request, imports.error)
            elif _abandoned(request):  # the run gave up waiting and ran it as a subprocess
                request.task.close()
                os.close(request.out_fd)
            elif request.needed <= imports.done:
                others = [control.fileno(), *children.fds()]
                others += [r.task.fileno() for r in waiting if r is not request]
                others += [r.out_fd for r in waiting if r is not request]
                children.add(_fork_task(request, others, imports), request.task)
            else:
                continue
            waiting.remove(request)
        if not imports.finished:
            imports.next()
    return 0


class _Children:
    """The tasks forked and the run's socket for each; `reap` (the SIGCHLD handler, which may
    run in the middle of `add` or of itself) sends each ended task's wait status."""

    def __init__(self) -> None:
        self.tasks: dict[int, socket.socket] = {}
        self.ended: dict[int, int] = {}  # reaped before `add` registered them

    def add(self, pid: int, task: socket.socket) -> None:
        self.tasks[pid] = task
        self.reap()

    def fds(self) -> list[int]:
        return [task.fileno() for task in list(self.tasks.values())]

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            self.ended[pid] = status
        for pid in list(self.ended):
            task = self.tasks.pop(pid, None)
            status = self.ended.pop(pid, None) if task is not None else None
            if task is None or status is None:
                continue
            with contextlib.suppress(OSError):
                task.sendall(f"S{status}\n".encode())
            task.close()


if __name__ == "__main__":
    status = serve(int(sys.argv[1]), sys.argv[2:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skip the native teardown of what it imported (TensorFlow & co.)
