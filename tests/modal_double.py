"""A Modal double at the network boundary: Modal's own client code runs, its servers do not.

- Apps: modal's real ``App.run`` / ``modal.runner._run_app`` runs; only its RPC
  helpers (app creation and publishing, object creation, heartbeats,
  disconnection, log streaming), the ``AppGetInfo`` RPC (an app's state) and
  ``_Client.from_env`` are replaced. Object creation checks each function's
  image as Modal does (no build step over a layer of local files). Each app
  records whether the client streams its log (``log_shown``: Modal does
  while the output enabled at the app's start lasts); each ``Image.build``
  records whether output was enabled, to show the build's log (``builds``). An
  ephemeral app's disconnection stops its containers, as on Modal, and so
  do lost heartbeats
  (``lose_heartbeats``); a stopped app's functions refuse calls.
- Calls: ``Function.spawn`` and ``Function.map`` send their arguments, pickled,
  to a container process (``modal_container.py``) started for the function's
  app and options, and kept warm for the next call until the app stops. The
  container imports this package only from the files its image mounts, finds
  the function through Modal's ``hydrate_function``, and has
  ``modal.is_local()`` False. A spawn outside a running app fails, as it
  does on Modal. A container idle for longer than its scale-down window on
  the server's clock (``pass_time``) is stopped, and the next call starts a
  new one.
- Queues: an ephemeral queue is a folder on the "server" that a container's
  ``put`` and the client's ``get_many`` share, in order.
- Volumes: each is a folder on the "server". A container sees a snapshot
  taken at its start until ``reload()``; ``commit()`` publishes its writes.
  On the client, ``listdir``, ``read_file``, ``remove_file`` and
  ``batch_upload`` (which refuses an existing path unless ``force=True``)
  act on the server's folder.

Settings a test may change: ``gpu`` (False: JAX in a container reports its
CPU, as when the CUDA plugin fails to load; a JAX device kind such as
``"NVIDIA A100-SXM4-80GB"``: the GPU every container is given), ``failing_commits`` (volume
names whose container commits raise), ``hold`` (spawned calls stay pending
until waited on without a timeout), ``call_error`` (the next calls end with
this Modal exception, as if their container died), ``interrupt_spawn``
(a Ctrl-C during that spawn, counting from 0) and ``preempt_after_commits``
(the next container started is preempted just after that many commits of
the results volume; as on Modal, its input is restarted in a new container,
which ``restarts`` records).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pickle
import queue
import shutil
import socket
import subprocess
import sys
import time
import types
from multiprocessing.connection import Connection
from pathlib import Path, PurePosixPath

import modal
import modal.client
import modal.exception
import modal.runner
from modal._image import _Image
from modal._utils.async_utils import synchronizer
from modal.mount import _Mount
from modal.output import OutputManager
from modal.running_app import RunningApp
from modal.types import FileEntry, FileEntryType
from modal_proto import api_pb2

CONTAINER = Path(__file__).with_name("modal_container.py")
DEFAULT_SCALEDOWN_WINDOW = 60  # Modal's
PACKAGE = "pymc_modal"


def _raw(handle):
    return synchronizer._translate_in(handle)


def _mounts(obj, seen: set[int]):
    """Every local mount ``obj`` depends on, as Modal's resolver would load them."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, _Mount) and obj.is_local():  # not Modal's own, remote ones
        yield obj
    for dependency in obj._deps_():
        yield from _mounts(dependency, seen)


def _check_image(image) -> bool:
    """Modal's check as it loads an image: no build step over a layer of local files.

    Returns whether ``image`` ends in such a layer.
    """
    below = [_check_image(base) for base in image._deps_() if isinstance(base, _Image)]
    if image._rep == "Image(local files)":
        return True
    if any(below):
        raise modal.exception.InvalidError(
            "An image tried to run a build step after using `image.add_local_*` to include "
            "local files (the double's check, as Modal's when it loads the image)."
        )
    return False


class Container:
    """One container process for a function: started, kept warm, stopped."""

    def __init__(self, server: Server, function, app_id: str) -> None:
        number = next(server.numbers)
        self.folder = server.root / "containers" / str(number)
        spec = (function._base_function or function)._spec
        self.server, self.idle_since = server, None
        # What a variant (Function.with_options) sets; a decorator's own values of these
        # reach only the definition Modal's servers get, so the double takes Modal's defaults.
        options = function._options
        self.window = options.scaledown_window or DEFAULT_SCALEDOWN_WINDOW
        self.timeout = options.timeout_secs
        self.retries = options.retry_policy.retries if options.retry_policy else 0
        self.image = spec.image
        # What the server gives the container: a variant's resources over its function's spec.
        given = function._options.resources if function._base_function else None
        self.cpu = given.milli_cpu / 1000 if given and given.milli_cpu else spec.cpu
        self.memory = given.memory_mb if given and given.memory_mb else spec.memory
        if given and given.gpu_config.gpu_type:
            self.gpus = [given.gpu_config.gpu_type]
        else:
            self.gpus = [spec.gpus] if isinstance(spec.gpus, str) else list(spec.gpus or [])
        files = self.folder / "fs"
        for mount in _mounts(
            types.SimpleNamespace(_deps_=lambda: [spec.image, *spec.mounts]), set()
        ):
            for entry in mount.entries:
                for local, remote in entry.get_files_to_upload():
                    target = files / PurePosixPath(remote).relative_to("/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(local, target)
        volumes = []
        for mount_path, volume in spec.volumes.items():
            name = _raw(volume)._name
            view = self.folder / "volumes" / name
            view.mkdir(parents=True)
            volumes.append(
                {
                    "name": name,
                    "mount": str(mount_path),
                    "server": str(server.volume(name)),
                    "view": str(view),
                }
            )
        self.volumes = {volume["name"]: Path(volume["view"]) for volume in volumes}
        config = {
            "root": str(files / "root"),
            "package": PACKAGE,
            "module": function._raw_f.__module__,
            "function": function._raw_f.__qualname__,
            "app_name": function._app._name,
            "app_id": app_id,
            "volumes": volumes,
            "gpu": server.gpu if self.gpus else False,  # a container asked for none has none
            "failing_commits": sorted(server.failing_commits),
            "preempt_after_commits": server.preempt_after_commits,
        }
        server.preempt_after_commits = None
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, str(CONTAINER), json.dumps(config), str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        self.connection = Connection(ours.detach())
        self.started = pickle.loads(self.connection.recv_bytes())

    def call(self, args: tuple) -> tuple:
        """The container's outcome for one input: ``("ok", value)`` or ``("error", exc)``."""
        if self.started[0] == "error":
            _, text, trace = self.started
            return "error", modal.exception.ExecutionError(f"The container failed: {text}\n{trace}")
        self.connection.send_bytes(pickle.dumps(args))
        reply = pickle.loads(self.connection.recv_bytes())
        self.idle_since = self.server.now()
        if reply[0] == "error" and isinstance(reply[1], str):
            return "error", modal.exception.RemoteError(f"{reply[1]}\n{reply[2]}")
        return reply[:2]

    def stop(self) -> None:
        self.connection.close()
        self.process.wait(timeout=60)


class QueueDouble:
    """An ephemeral ``modal.Queue``: a folder on the "server", from any process, in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True)

    def put(self, value, block=True, timeout=None, **kwargs) -> None:
        partial = self.folder / f".{os.getpid()}"
        partial.write_bytes(pickle.dumps(value))
        partial.rename(self.folder / f"{time.monotonic_ns():020d}")

    def get_many(self, n_values, block=True, timeout=None, **kwargs) -> list:
        waited = 0.0
        while True:
            names = sorted(path for path in self.folder.iterdir() if not path.name.startswith("."))
            if names or not block:
                values = [pickle.loads(path.read_bytes()) for path in names[:n_values]]
                for path in names[:n_values]:
                    path.unlink()
                return values
            if timeout is not None and waited >= timeout:
                raise queue.Empty
            time.sleep(0.01)  # the server holding a blocking get open
            waited += 0.01


class Call:
    """A spawned call, as ``modal.FunctionCall`` offers it."""

    def __init__(self, server: Server, run) -> None:
        self.object_id = f"fc-double-{next(server.numbers)}"
        self.server, self.run, self.outcome, self.cancelled = server, run, None, []
        if not server.hold:
            self.outcome = run()

    def get(self, timeout: float | None = None):
        if self.outcome is None:
            if timeout is not None:
                raise TimeoutError()
            self.outcome = self.run()
        kind, value = self.outcome
        if kind == "error":
            raise value
        return value

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled.append(terminate_containers)


class Server:
    """Modal's servers, for one test: apps, containers, calls and volumes."""

    def __init__(self, root: Path, monkeypatch) -> None:
        self.root, self.numbers = root, itertools.count()
        self.apps: dict[str, dict] = {}
        self.pools: dict[tuple, list[Container]] = {}
        self.containers: list[Container] = []
        self.calls: dict[str, Call] = {}
        self.spawned: list[tuple] = []
        self.mapped: list[list] = []
        self.options: list[dict] = []
        self.listed: list[str] = []
        self.uploaded: list[str] = []
        self.gpu, self.failing_commits, self.hold = True, set(), False
        self.call_error: Exception | None = None
        self.interrupt_spawn: int | None = None
        self.preempt_after_commits: int | None = None
        self.restarts: list[tuple] = []
        self.queues: list[QueueDouble] = []
        self.builds: list[bool] = []
        self.passed = 0.0
        self._patch(monkeypatch)

    def now(self) -> float:
        """The server's clock: this machine's, moved on by :meth:`pass_time`."""
        return time.monotonic() + self.passed

    def pass_time(self, seconds: float) -> None:
        """Let ``seconds`` pass on the server at once, as for containers' scale-down windows."""
        self.passed += seconds

    # The server's record of what happened, for assertions.
    @property
    def started_apps(self) -> list[dict]:
        return list(self.apps.values())

    def volume(self, name: str) -> Path:
        """The server's folder for a volume: what a commit has published."""
        folder = self.root / "volumes" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def stop(self) -> None:
        for container in self.containers:
            container.stop()

    def lose_heartbeats(self) -> None:
        """Stop every ephemeral app, as Modal does once its client's heartbeats stop
        (the client's machine asleep, its network gone)."""
        for app_id, app in self.apps.items():
            if not app["detached"]:
                self.stop_app(app_id)

    def stop_app(self, app_id: str) -> None:
        self.apps[app_id]["stopped"] = True
        for container in self.apps[app_id]["containers"]:
            container.stop()
            for pool in self.pools.values():
                if container in pool:
                    pool.remove(container)

    def _container(self, function) -> Container:
        app = function._app
        if app._running_app is None:
            raise modal.exception.ExecutionError(
                f"Function {function._tag!r} was called outside a running app (the double's check)"
            )
        app_id = app._running_app.app_id
        key = (app_id, id(function._base_function or function), repr(function._options))
        pool = self.pools.setdefault(key, [])
        idle = pool and pool[0].idle_since is not None and self.now() - pool[0].idle_since
        if idle and idle > pool[0].window:  # Modal scaled it down while it waited
            pool.pop(0).stop()
        if not pool:
            container = Container(self, function, app_id)
            self.containers.append(container)
            self.apps[app_id]["containers"].append(container)
            pool.append(container)
        return pool[0]

    def _outcome(self, function, args: tuple):
        running = function._app._running_app
        if running is not None and self.apps[running.app_id]["stopped"]:
            raise modal.exception.NotFoundError(
                f"App {running.app_id} is stopped (the double's refusal)"
            )
        if self.call_error is not None:
            error = self.call_error
            return lambda: ("error", error)
        container = self._container(function)

        def run():
            nonlocal container
            while True:
                try:
                    return container.call(args)
                except EOFError:  # preempted: Modal restarts the input in a new container
                    container.stop()
                    for pool in self.pools.values():
                        if container in pool:
                            pool.remove(container)
                    self.restarts.append(args)
                    container = self._container(function)

        return run

    def _patch(self, monkeypatch) -> None:
        server = self

        async def app_get_info(request):
            app = server.apps[request.app_id]
            state = api_pb2.APP_STATE_EPHEMERAL
            if app["stopped"]:
                state = api_pb2.APP_STATE_STOPPED
            elif app["detached"]:
                state = api_pb2.APP_STATE_DETACHED
            lifecycle = api_pb2.AppLifecycle(app_state=state, created_at=1.0)
            info = api_pb2.AppHandleMetadata(app_id=request.app_id, lifecycle=lifecycle)
            return api_pb2.AppGetInfoResponse(info=info)

        class OfflineClient(modal.client._Client):
            """A client that never connects: any RPC nobody doubled fails at once."""

            @property
            def _stub(self):
                return types.SimpleNamespace(AppGetInfo=app_get_info)

        client = OfflineClient("https://modal.invalid", api_pb2.CLIENT_TYPE_CLIENT, None)

        async def from_env(cls, _override_config=None):
            return client

        async def init_local_app_new(client, description, tags, app_state, **kwargs):
            app_id = f"ap-double-{next(server.numbers)}"
            detached = app_state == api_pb2.APP_STATE_DETACHED
            server.apps[app_id] = {
                "description": description,
                "detached": detached,
                "stopped": False,
                "containers": [],
                "log_shown": False,  # whether the client shows the app's log (Modal's output)
            }
            return RunningApp(app_id, app_page_url=f"https://modal.invalid/{app_id}")

        async def nothing(*args, **kwargs):
            return None

        async def publish_app(*args, **kwargs):
            return "https://modal.invalid/app", [], 0.0

        async def disconnect(client, app_id, reason, exc_str=""):
            if not server.apps[app_id]["detached"]:
                server.stop_app(app_id)

        async def create_all_objects(running_app, local_app_state, load_context, output_mgr):
            for function in local_app_state.functions.values():
                _check_image(function._spec.image)

        async def logs_loop(client, output_manager, app_id):
            server.apps[app_id]["log_shown"] = True

        def build(image, app=None):
            _check_image(_raw(image))
            server.builds.append(OutputManager.get().is_enabled)
            return image

        real_with_options = modal.Function.with_options

        def with_options(function, **kwargs):
            server.options.append(kwargs)
            return real_with_options(function, **kwargs)

        def spawn(function, *args, **kwargs):
            assert not kwargs
            if server.interrupt_spawn == len(server.spawned):
                server.spawned.append(args)
                raise KeyboardInterrupt
            server.spawned.append(args)
            call = Call(server, server._outcome(_raw(function), args))
            server.calls[call.object_id] = call
            return call

        def map_(function, *inputs, **kwargs):
            assert not kwargs
            calls = list(zip(*inputs, strict=True))
            server.mapped.append([args[0] for args in calls])
            for args in calls:
                kind, value = server._outcome(_raw(function), args)()
                if kind == "error":
                    raise value
                yield value

        def from_id(call_id, client=None):
            return server.calls[call_id]

        @contextlib.contextmanager
        def ephemeral_queue(client=None, environment_name=None):
            made = QueueDouble(server.root / "queues" / str(next(server.numbers)))
            server.queues.append(made)
            yield made

        monkeypatch.setattr(modal.client._Client, "from_env", classmethod(from_env))
        monkeypatch.setattr(modal.runner, "_init_local_app_new", init_local_app_new)
        monkeypatch.setattr(modal.runner, "_create_all_objects", create_all_objects)
        monkeypatch.setattr(modal.runner, "_publish_app", publish_app)
        monkeypatch.setattr(modal.runner, "_heartbeat", nothing)
        monkeypatch.setattr(modal.runner, "_disconnect", disconnect)
        monkeypatch.setattr(modal.runner, "get_app_logs_loop", logs_loop)
        monkeypatch.setattr(modal.Image, "build", build)
        monkeypatch.setattr(modal.Function, "with_options", with_options)
        monkeypatch.setattr(modal.Function, "spawn", spawn)
        monkeypatch.setattr(modal.Function, "map", map_)
        monkeypatch.setattr(modal.FunctionCall, "from_id", from_id)
        monkeypatch.setattr(modal.Queue, "ephemeral", staticmethod(ephemeral_queue))
        self._patch_volumes(monkeypatch)

    def _patch_volumes(self, monkeypatch) -> None:
        server = self

        def folder(volume) -> Path:
            return server.volume(_raw(volume)._name)

        def path_in(volume, path: str) -> Path:
            return folder(volume) / path.strip("/")

        def listdir(volume, path, recursive=False):
            server.listed.append(path)
            target = path_in(volume, path)
            if not target.exists():
                raise modal.exception.NotFoundError(f"No such file or directory: {path}")
            entries = target.rglob("*") if recursive else target.iterdir()
            return [
                FileEntry(
                    path=str(entry.relative_to(folder(volume))),
                    type=FileEntryType.DIRECTORY if entry.is_dir() else FileEntryType.FILE,
                    mtime=int(entry.stat().st_mtime),
                    size=entry.stat().st_size,
                )
                for entry in sorted(entries)
            ]

        def read_file(volume, path):
            target = path_in(volume, path)
            if not target.is_file():
                raise FileNotFoundError(f"No such file: {path}")
            yield target.read_bytes()

        def remove_file(volume, path, recursive=False):
            target = path_in(volume, path)
            if not target.exists():
                raise FileNotFoundError(f"No such file: {path}")
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()

        @contextlib.contextmanager
        def batch_upload(volume, force=False):
            puts: list[tuple[Path, bytes]] = []
            yield types.SimpleNamespace(
                put_file=lambda file, path: puts.append((path_in(volume, path), file.read()))
            )
            existing = [str(target) for target, _ in puts if target.exists()]
            if existing and not force:
                raise FileExistsError(f"{existing[0]} already exists (force=False)")
            for target, data in puts:
                server.uploaded.append(str(target.relative_to(folder(volume))))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)

        monkeypatch.setattr(modal.Volume, "listdir", listdir)
        monkeypatch.setattr(modal.Volume, "read_file", read_file)
        monkeypatch.setattr(modal.Volume, "remove_file", remove_file)
        monkeypatch.setattr(modal.Volume, "batch_upload", batch_upload)
