"""One Modal container, offline: the process :mod:`modal_double` starts for a function.

As in a real container, ``modal.is_local()`` is False, the function is found
through Modal's own import path (``hydrate_function``), this package is
imported only from the files its image mounts (never from the client's
site-packages), and each Volume is seen as it was when the container started
until it is reloaded; a commit publishes its writes. Without a GPU in the
double's settings, JAX reports the CPU it runs on, as on a GPU container
whose CUDA plugin failed to load.

Run as ``python modal_container.py CONFIG FD``; inputs arrive on the socket
``FD`` as pickled argument tuples and each is answered with a pickled
``("ok", value)`` or ``("error", exception, traceback)``.
"""

import importlib.abc
import importlib.machinery
import json
import os
import pickle
import shutil
import socket
import sys
import traceback
import types
from multiprocessing.connection import Connection

config = json.loads(sys.argv[1])
connection = Connection(socket.socket(fileno=int(sys.argv[2])).detach())
ROOT = config["root"]


class _MountedOnly(importlib.abc.MetaPathFinder):
    """The package under test comes from the image's mount, or is not found at all."""

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] != config["package"]:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path if "." in name else [ROOT])
        if spec is None or not str(spec.origin).startswith(ROOT):
            raise ModuleNotFoundError(f"No module named {name!r} in the container", name=name)
        return spec


sys.meta_path.insert(0, _MountedOnly())
sys.path.insert(0, ROOT)


def _copy_tree(source: str, target: str) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True)


for volume in config["volumes"]:
    _copy_tree(volume["server"], volume["view"])  # the snapshot a container starts with

import modal  # noqa: E402
from modal._container_entrypoint import hydrate_function  # noqa: E402
from modal._runtime.task_lifecycle_manager import TaskLifecycleManager  # noqa: E402
from modal._utils.async_utils import synchronizer  # noqa: E402
from modal_proto import api_pb2  # noqa: E402

by_name = {volume["name"]: volume for volume in config["volumes"]}


def _volume(handle) -> dict:
    return by_name[synchronizer._translate_in(handle)._name]


def reload(handle) -> None:
    _copy_tree(_volume(handle)["server"], _volume(handle)["view"])


_results_commits = 0


def commit(handle) -> None:
    global _results_commits
    volume = _volume(handle)
    if volume["name"] in config["failing_commits"]:
        raise RuntimeError(f"Volume {volume['name']!r} commit conflict (as the double was told)")
    _copy_tree(volume["view"], volume["server"])
    reload(handle)
    if volume["name"] == "pymc-modal-results":
        _results_commits += 1
        if _results_commits == config["preempt_after_commits"]:
            os._exit(1)  # preempted: the container is gone, its input not answered


modal.Volume.reload = reload
modal.Volume.commit = commit
if config["gpu"]:
    import jax

    jax.default_backend = lambda: "gpu"
if isinstance(config["gpu"], str):
    import jax

    class _Gpu:
        """The host's JAX device, reporting itself as the GPU the server gave."""

        platform, device_kind = "gpu", config["gpu"]

        def __init__(self, device):
            self._device = device

        def __getattr__(self, name):
            return getattr(self._device, name)

    _devices = jax.devices
    jax.devices = lambda *args, **kwargs: [_Gpu(d) for d in _devices(*args, **kwargs)]

client = modal.Client("https://modal.invalid", api_pb2.CLIENT_TYPE_CONTAINER, None)
definition = api_pb2.Function(
    module_name=config["module"],
    function_name=config["function"],
    implementation_name=config["function"],
    app_name=config["app_name"],
    definition_type=api_pb2.Function.DEFINITION_TYPE_FILE,
)
arguments = api_pb2.ContainerArguments(
    task_id="ta-double", function_id="fu-double", app_id=config["app_id"], function_def=definition
)


class _TaskResults:
    """Where a container reports a failure to start: the double, not Modal's server."""

    async def TaskResult(self, request):  # noqa: N802 - the RPC's name
        connection.send_bytes(
            pickle.dumps(("error", request.result.exception, request.result.traceback))
        )


lifecycle = TaskLifecycleManager("ta-double", "fu-double", definition, None, client)
synchronizer._translate_in(lifecycle)._client = types.SimpleNamespace(_stub=_TaskResults())
try:
    service = hydrate_function(arguments, lifecycle, definition, synchronizer._translate_in(client))
except BaseException:  # noqa: BLE001 - already reported, as Modal reports it
    sys.exit(1)

module = sys.modules[config["module"]]
mounts = {volume["mount"]: volume["view"] for volume in config["volumes"]}
for name, value in list(vars(module).items()):
    if isinstance(value, str) and value in mounts:
        setattr(module, name, mounts[value])  # the volume, mounted at its path

function = service._user_defined_callable
connection.send_bytes(
    pickle.dumps(
        ("ready", {"is_local": modal.is_local(), "file": sys.modules[config["package"]].__file__})
    )
)
while True:
    try:
        args = pickle.loads(connection.recv_bytes())
    except EOFError:
        break
    try:
        reply = ("ok", function(*args))
    except BaseException as exc:  # noqa: BLE001 - raised again in the client, as Modal does
        reply = ("error", exc, traceback.format_exc())
    try:
        connection.send_bytes(pickle.dumps(reply))
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        connection.send_bytes(pickle.dumps(("error", repr(reply[1]), reply[2])))
