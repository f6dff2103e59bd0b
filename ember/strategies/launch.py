"""How the processes of a distributed run start, on torch's own launchers.

A run gets its processes in one of three ways:

- **Something already started them** (torchrun, SLURM's ``srun``, or ember's own launch earlier in this
  script): ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are in the environment, and each process joins
  the job (:func:`_detect_cluster`).
- **``strategy="ddp"`` in a plain ``python train.py``**: the same command is started again for local ranks
  1..N-1, with the environment torchrun gives its workers, through torch.distributed.elastic's process
  context (which starts, watches and stops them); this process stays local rank 0 (:class:`_ScriptLauncher`).
- **``ddp_spawn`` / ``ddp_fork``**: ``torch.multiprocessing.start_processes`` runs the Trainer call in N
  worker processes; local rank 0 sends its results back (:class:`_MultiprocessingLauncher`).

A failing rank ends the job: its exception is recorded in its elastic error file, the other processes are
stopped, and the process the user started raises it (``ChildFailedError`` or ``ProcessRaisedException``,
both with the failing rank's traceback).
"""

from __future__ import annotations

import atexit
import functools
import os
import pickle
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ember.strategies.ddp import DDPStrategy
    from ember.trainer.trainer import Trainer

# What a rank reports when another rank died under it: not the cause of a failure, only its echo.
_COLLATERAL = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "ECONNRESET",
               "NCCL communicator was aborted", "remote worker crashing")
# What gloo, NCCL and the store say when a collective waited longer than the process-group timeout.
_TIMEOUT = ("Timed out waiting", "collective operation timeout", "Socket Timeout", "Wait timeout")


def _is_collateral(err: BaseException | str) -> bool:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    return any(marker in text for marker in _COLLATERAL)


def _is_timeout(err: BaseException) -> bool:
    return isinstance(err, RuntimeError) and any(marker in str(err) for marker in _TIMEOUT)


def _find_free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it when we bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


# -- joining a job that something else started ----------------------------------------------------
@dataclass
class _Cluster:
    """Where this process sits in a job started by torchrun, SLURM or another launcher."""

    name: str
    world_size: int
    global_rank: int
    local_rank: int
    node_rank: int
    main_address: str | None
    main_port: int | None


def _detect_cluster() -> _Cluster | None:
    """The job this process belongs to, when a launcher started it; None when ember must start the processes."""
    env = os.environ
    if all(key in env for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        name = "torchrun" if "TORCHELASTIC_RUN_ID" in env else "the launcher that set RANK/WORLD_SIZE/LOCAL_RANK"
        return _Cluster(name, int(env["WORLD_SIZE"]), int(env["RANK"]), int(env["LOCAL_RANK"]),
                        int(env.get("GROUP_RANK", env.get("NODE_RANK", "0"))), env.get("MASTER_ADDR"),
                        int(env["MASTER_PORT"]) if "MASTER_PORT" in env else None)
    if _slurm_manages_tasks():
        return _Cluster("SLURM", int(env["SLURM_NTASKS"]), int(env["SLURM_PROCID"]), int(env["SLURM_LOCALID"]),
                        int(env.get("SLURM_NODEID", "0")),
                        env.get("MASTER_ADDR") or _first_slurm_host(env.get("SLURM_NODELIST", "127.0.0.1")),
                        int(env.get("MASTER_PORT") or 10000 + int(env.get("SLURM_JOB_ID", "0")) % 20000))
    return None


def _slurm_manages_tasks() -> bool:
    """``srun`` started one task per process (an interactive ``salloc`` shell does not count)."""
    env = os.environ
    return ("SLURM_NTASKS" in env and "SLURM_PROCID" in env and "SLURM_LOCALID" in env
            and env.get("SLURM_JOB_NAME") not in ("bash", "interactive") and int(env["SLURM_NTASKS"]) > 1)


def _first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list such as ``gpu[07-09,12],cpu01`` (here ``gpu07``)."""
    first = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if first is None:
        return "127.0.0.1"
    prefix, ranges = first.group(1), first.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


# -- ddp: start this script again for the other local ranks ----------------------------------------
def _script_command() -> list[str] | None:
    """The command that started this process, to start it again; None where there is no script to rerun."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", ""):
        module = spec.name.removesuffix(".__main__")
        return [sys.executable, "-m", module, *sys.argv[1:]]
    script = getattr(__main__, "__file__", None)
    if not script or not sys.argv or sys.argv[0] in ("", "-c"):
        return None
    return [sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]]


def _is_interactive() -> bool:
    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or _script_command() is None


_LAUNCHER: _ScriptLauncher | None = None  # at most one per process: the children it started live once


class _ScriptLauncher:
    """Starts this script again for local ranks 1..N-1, as torchrun would, and watches the children.

    The children get torchrun's environment variables (so that their Trainer joins the job instead of
    launching again) and an elastic error file in which ember records the exception that ends their run.
    A thread polls them: when one fails, elastic stops the others, and this process (whose collectives now
    fail) raises the child's traceback; if it does not get there within ``grace_s`` (blocked somewhere that
    no peer can interrupt, such as the rendezvous), the thread prints the failure and ends the process.
    """

    grace_s = 10.0

    def __init__(self, num_processes: int, num_nodes: int, node_rank: int, address: str, port: int) -> None:
        self.num_processes, self.num_nodes, self.node_rank = num_processes, num_nodes, node_rank
        self.address, self.port = address, port
        self._context: Any = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._claimed = threading.Event()
        self._result: Any = None
        self._log_dir: str | None = None

    def _env(self, local_rank: int) -> dict[str, str]:
        """What torchrun sets for a worker (plus NODE_RANK, which Lightning scripts read)."""
        world_size = self.num_processes * self.num_nodes
        return {"MASTER_ADDR": self.address, "MASTER_PORT": str(self.port), "WORLD_SIZE": str(world_size),
                "RANK": str(self.node_rank * self.num_processes + local_rank), "LOCAL_RANK": str(local_rank),
                "LOCAL_WORLD_SIZE": str(self.num_processes), "GROUP_RANK": str(self.node_rank),
                "NODE_RANK": str(self.node_rank), "ROLE_RANK": str(self.node_rank * self.num_processes + local_rank),
                "ROLE_WORLD_SIZE": str(world_size)}

    def launch(self) -> None:
        from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std, start_processes

        command = _script_command()
        assert command is not None, "checked when the strategy was configured"
        os.environ.update(self._env(0))  # a later Trainer in this process joins this job instead of launching
        _register_group_teardown()
        children = range(1, self.num_processes)
        self._log_dir = tempfile.mkdtemp(prefix="ember-ddp-")
        self._context = start_processes(
            name=os.path.basename(command[1] if command[1] != "-m" else command[2]),
            entrypoint=command[0], args={i: tuple(command[1:]) for i in range(len(children))},
            envs={i: self._env(local_rank) for i, local_rank in enumerate(children)},
            logs_specs=DefaultLogsSpecs(log_dir=self._log_dir, redirects=Std.NONE, tee=Std.NONE))
        # elastic gives SIGTERM'd workers 30 s before SIGKILL; a job that already failed should end in seconds
        self._context.close = functools.partial(self._context.close, timeout=3)
        threading.Thread(target=self._watch, name="ember-ddp-children", daemon=True).start()
        atexit.register(self._wait_at_exit)

    def _watch(self) -> None:
        while not self._claimed.is_set():
            with self._lock:
                result = None if self._claimed.is_set() else self._context.wait(timeout=0)
            if result is not None:
                self._result = result
                self._done.set()
                break
            time.sleep(0.1)
        if self._result is not None and self._result.is_failed() and not self._claimed.wait(self.grace_s):
            sys.stderr.write(f"{self._error()}\nember: ending rank {self.node_rank * self.num_processes} as "
                             "well: it was blocked where the failure could not reach it.\n")
            sys.stderr.flush()
            shutil.rmtree(self._log_dir or "", ignore_errors=True)
            os._exit(1)  # from this thread: the main one may sit in a rendezvous that no signal interrupts

    def _error(self) -> Exception:
        """A ChildFailedError naming the failure that caused the others (with its traceback)."""
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

        def message(failure: Any) -> str:
            return failure.message if isinstance(failure.message, str) else str(failure.message.get("message"))

        failures = self._result.failures
        index, root = min(failures.items(), key=lambda item: (_is_collateral(message(item[1])) or
                                                                item[1].exitcode < 0, item[1].timestamp))
        root.local_rank = index + 1
        return ChildFailedError(f"{self._context.name} (ember DDP)",
                                {self.node_rank * self.num_processes + index + 1: root})

    def child_failure(self, wait_s: float) -> Exception | None:
        """The failure of a child, waiting up to ``wait_s`` for one to show; None if none failed."""
        if self._done.wait(wait_s) and self._result.is_failed():
            return self._error()
        return None

    def close(self) -> None:
        """Stop every child that still runs (the job is over) and stop watching them."""
        self._claimed.set()
        with self._lock:
            self._context.close()

    def _wait_at_exit(self) -> None:
        """This script ends: the job ends when every rank has (a failed child makes the exit code 1)."""
        if not self._claimed.is_set():
            self._done.wait()
            self._claimed.set()
            if self._result.is_failed():
                sys.stderr.write(f"{self._error()}\n")
                sys.stderr.flush()
                shutil.rmtree(self._log_dir or "", ignore_errors=True)
                os._exit(1)
        shutil.rmtree(self._log_dir or "", ignore_errors=True)


def _launch_script(num_processes: int, num_nodes: int, node_rank: int, address: str, port: int) -> None:
    global _LAUNCHER
    if _LAUNCHER is None:
        _LAUNCHER = _ScriptLauncher(num_processes, num_nodes, node_rank, address, port)
        _LAUNCHER.launch()


def _record_error(err: BaseException) -> None:
    """Write ``err`` to this worker's elastic error file (torchrun and ember's launcher report it as the cause)."""
    global _FAILED
    _FAILED = True
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(err)


_OWNS_GROUP = False  # ember created the default process group (so ember destroys it, at exit)


def _destroy_owned_group() -> None:
    if _OWNS_GROUP and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


_FAILED = False  # a run failed in this process: its peers may be gone, so it does not wait for them at exit


def _leave_together() -> None:
    """At exit, wait (30 s at most) until every rank is exiting: a rank that tears gloo down while a peer
    still talks to it makes that peer abort ("terminate called without an active exception")."""
    dist = torch.distributed
    if _FAILED or not _OWNS_GROUP or not dist.is_initialized() or dist.get_backend() != "gloo":
        return
    try:
        dist.monitored_barrier(timeout=timedelta(seconds=30))
    except Exception:  # noqa: BLE001 - exiting anyway; a missing peer must not block the exit
        pass


def _register_group_teardown(created: bool = False) -> None:
    """Destroy the group ember creates when the interpreter exits, after waiting for the children (atexit
    runs last-registered first, so this registers before the children are started)."""
    global _OWNS_GROUP
    _OWNS_GROUP = _OWNS_GROUP or created
    if not getattr(_register_group_teardown, "done", False):
        _register_group_teardown.done = True  # type: ignore[attr-defined]
        atexit.register(_destroy_owned_group)


# -- ddp_spawn / ddp_fork --------------------------------------------------------------------------
class _MultiprocessingLauncher:
    """Runs one Trainer call (fit, validate, test, predict) in N processes started by torch.multiprocessing.

    With "spawn" the trainer, model and data travel pickled as bytes (tensors by value: never shared memory
    that two ranks would both update); with "fork" the children inherit them. Local rank 0 writes its
    results to a file: the trained weights, trainer state and progress, the metrics, the checkpoint
    callbacks' state and the call's return value, which this process loads into its own trainer.
    """

    def __init__(self, strategy: DDPStrategy, start_method: str) -> None:
        self.strategy = strategy
        self.start_method = start_method

    def launch(self, trainer: Trainer, method: str, *args: Any) -> Any:
        from ember.trainer.loops import _rng_state
        from ember.trainer.states import TrainerStatus

        if self.start_method in ("fork", "forkserver") and torch.cuda.is_available() and torch.cuda.is_initialized():
            raise RuntimeError(f"strategy='ddp_{self.start_method}' cannot start processes after CUDA was "
                               "initialized in this process; use strategy='ddp' (or 'ddp_spawn') instead.")
        port = int(os.environ.get("MASTER_PORT") or _find_free_port())
        address = os.environ.get("MASTER_ADDR", "127.0.0.1")
        out_dir = tempfile.mkdtemp(prefix="ember-ddp-spawn-")
        payload: Any = (trainer, method, args, _rng_state(), address, port)
        if self.start_method == "spawn":
            payload = pickle.dumps(payload)
        try:
            context = torch.multiprocessing.start_processes(_run_worker, args=(payload, out_dir),
                                                            nprocs=self.strategy.num_processes, join=False,
                                                            start_method=self.start_method)
            _join(context)
            results = torch.load(os.path.join(out_dir, "rank0.pt"), map_location="cpu", weights_only=False)
        except BaseException:
            trainer.state.status = TrainerStatus.INTERRUPTED
            raise
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        _recover_results(trainer, results)
        return results["return"]


def _join(context: Any) -> None:
    """Wait for the workers. When one fails, the others get 3 s to end before SIGTERM, then 3 s before SIGKILL
    (not torch's 30: they may ignore SIGTERM while fitting, see preemption), and the error raised is the
    failure that caused the others, not a peer's broken connection."""
    from torch.multiprocessing import ProcessRaisedException

    try:
        while not context.join(grace_period=3):
            pass
    except ProcessRaisedException as err:
        if not _is_collateral(str(err)):
            raise
        for index, path in enumerate(context.error_files):
            if index != err.error_index and path and os.path.exists(path) and os.path.getsize(path):
                with open(path, "rb") as file:
                    trace = pickle.load(file)
                if not _is_collateral(trace):
                    raise ProcessRaisedException(f"\n\n-- Process {index} terminated with the following error:\n"
                                                 f"{trace}", index, context.processes[index].pid) from err
        raise


def _run_worker(local_rank: int, payload: Any, out_dir: str) -> None:
    """One worker of ddp_spawn/ddp_fork: rebuild the trainer, run the call, send rank 0's results home."""
    from ember.trainer.loops import _set_rng_state

    if isinstance(payload, bytes):
        trainer, method, args, rng, address, port = pickle.loads(payload)
        _set_rng_state(rng)  # the workers start from the random state the user left in the main process
    else:
        trainer, method, args, rng, address, port = payload
    trainer.strategy._become_worker(local_rank, address, port)
    out = getattr(trainer, method)(*args)
    results = _worker_results(trainer, out)
    if local_rank == 0:
        torch.save(results, os.path.join(out_dir, "rank0.pt"))


def _worker_results(trainer: Trainer, out: Any) -> dict[str, Any]:
    def cpu(metrics: dict[str, Any]) -> dict[str, Any]:
        return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}

    from ember.trainer.states import TrainerFn

    fitting = trainer.state.fn == TrainerFn.FITTING
    weights = trainer.lightning_module.state_dict() if fitting else None  # on every rank: torchmetrics may sync
    return {"return": out, "state": trainer.state, "progress": trainer._progress,
            "weights": {k: v.detach().cpu() for k, v in weights.items()} if weights is not None else None,
            "callback_metrics": cpu(trainer.callback_metrics), "logged_metrics": cpu(trainer.logged_metrics),
            "progress_bar_metrics": dict(trainer.progress_bar_metrics),
            "checkpoint_callbacks": [cb.state_dict() for cb in trainer.checkpoint_callbacks]}


def _recover_results(trainer: Trainer, results: dict[str, Any]) -> None:
    """Put what rank 0 computed into this (the main) process's trainer and model."""
    if results["weights"] is not None:
        # not strict: the model may have grown or lost layers in the worker (configure_model)
        trainer.lightning_module.load_state_dict(results["weights"], strict=False)
    trainer.state = results["state"]
    trainer._progress = results["progress"]
    trainer._metrics.callback.update(results["callback_metrics"])
    trainer._metrics.logged.update(results["logged_metrics"])
    trainer._metrics.pbar.update(results["progress_bar_metrics"])
    for callback, state in zip(trainer.checkpoint_callbacks, results["checkpoint_callbacks"]):
        if callback.dirpath is None:
            callback.dirpath = state.get("dirpath")
        callback.load_state_dict(state)
