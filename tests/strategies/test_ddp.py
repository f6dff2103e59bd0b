"""DDP on CPU with gloo: real processes started the ways users start them, compared with one process.

The multi-process tests run ``scripts/ddp_run.py`` (python with strategy="ddp", ddp_spawn/ddp_fork, torchrun,
two torchrun "nodes" on localhost) and compare what each rank saw with a plain-torch run over the same global
batches. The rest checks strategy selection, environment detection and data sharding in-process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SubsetRandomSampler, TensorDataset

import ember as pl
from ember.strategies import DDPStrategy, SingleDeviceStrategy
from ember.strategies.ddp import _distributed_dataloader, _revert_sync_batchnorm
from ember.strategies.launch import _detect_cluster, _first_slurm_host
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_only

SCRIPT = Path(__file__).parent / "scripts" / "ddp_run.py"
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(SCRIPT.parent))
from ddp_run import GLOBAL_BATCH, LR, N_TRAIN, N_VAL, Regression, data  # noqa: E402


# -- the single-process reference ---------------------------------------------------------------------
def reference(epochs: int, batch: int = GLOBAL_BATCH) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Plain torch: SGD over the same global batches; (weights, losses of the last epoch)."""
    model = Regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = data(N_TRAIN, 1).tensors
    losses: list[float] = []
    for _ in range(epochs):
        losses = []
        for i in range(0, N_TRAIN, batch):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x[i:i + batch]), y[i:i + batch])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return model.state_dict(), losses


def val_loss(state: dict[str, torch.Tensor]) -> float:
    model = Regression()
    model.load_state_dict(state)
    x, y = data(N_VAL, 2).tensors
    return torch.nn.functional.mse_loss(model(x), y).item()


def assert_weights(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], atol=1e-5, rtol=0)


# -- running the script -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in (
        "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "MASTER_ADDR",
        "MASTER_PORT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_ERROR_FILE", "SLURM_NTASKS")}
    return {**clean, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def torchrun(log_dir: Path, *args: str) -> tuple[str, ...]:
    return ("-m", "torch.distributed.run", "--master_addr=127.0.0.1", f"--log-dir={log_dir}", *args)


class Runs:
    """Every multi-process run of this file, started together (they mostly wait: for imports on 2 cores, for
    rendezvous, for timeouts), so that the file takes about as long as its longest run."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: dict[str, list[subprocess.Popen]] = {}
        self.results: dict[str, list[tuple[int, str, float]]] = {}

    def start(self, name: str, *args: str, launchers: tuple[tuple[str, ...], ...] = ((),)) -> None:
        out = self.base / name
        out.mkdir()
        self.procs[name] = []
        for i, launcher in enumerate(launchers):  # output to files: a full pipe would block a waiting run
            with open(out / f"output-{i}.txt", "w") as log:
                self.procs[name].append(subprocess.Popen([sys.executable, *launcher, str(SCRIPT), str(out), *args],
                                                         env=env(), cwd=out, stdout=log, stderr=subprocess.STDOUT))

    def result(self, name: str, timeout: float = 120) -> list[tuple[int, str, float]]:
        """(exit code, output, time of its last output) of each process started for ``name``."""
        if name not in self.results:
            self.results[name] = []
            for i, proc in enumerate(self.procs[name]):
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                log = self.base / name / f"output-{i}.txt"
                ended, output = log.stat().st_mtime, log.read_text()  # its last words: when the job ended
                if proc.returncode == -9:
                    pytest.fail(f"{name}: the run did not end within {timeout} s:\n{output[-4000:]}")
                self.results[name].append((proc.returncode, output, ended))
        return self.results[name]

    def succeeded(self, name: str) -> Path:
        for code, output, _ in self.result(name):
            assert code == 0, output[-6000:]
        return self.base / name

    def stop(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


# The timeout also bounds the rendezvous, where rank 0 waits for the others to start (up to ~9 s when this
# file's runs share 2 busy cores): 20 s keeps a margin.
HANG_TIMEOUT = 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory: Any) -> Any:
    runs = Runs(tmp_path_factory.mktemp("ddp"))
    port, nodes_port = free_port(), free_port()
    runs.start("hang", "--scenario", "hang", "--timeout", str(HANG_TIMEOUT))
    runs.start("fail", "--scenario", "fail", "--timeout", "30")
    runs.start("full", "--scenario", "full")
    runs.start("spawn", "--scenario", "basic", "--strategy", "ddp_spawn")
    logs = runs.base / "torchrun-logs"  # torchrun's own (else it leaves a folder in /tmp per run)
    runs.start("torchrun", "--scenario", "basic",
               launchers=(torchrun(logs, "--nproc_per_node=2", f"--master_port={port}"),))
    runs.start("nodes", "--scenario", "basic", "--devices", "1", "--num-nodes", "2", launchers=tuple(
        torchrun(logs, "--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1", f"--master_port={nodes_port}")
        for rank in (0, 1)))
    yield runs
    runs.stop()


def reports(out: Path, world_size: int = 2) -> list[dict[str, Any]]:
    found = [torch.load(out / f"proc-{rank}.pt", weights_only=False) for rank in range(world_size)]
    assert [r["global_rank"] for r in found] == list(range(world_size))
    return found


# -- multi-process runs -------------------------------------------------------------------------------
def test_ddp_relaunches_the_script_and_matches_one_process(runs: Runs) -> None:
    """python script.py with Trainer(strategy="ddp", devices=2): two ranks, same result as one process."""
    out = runs.succeeded("full")
    ranks = reports(out)
    fit_ref, last_losses = reference(epochs=2)
    for rank, r in enumerate(ranks):
        assert (r["world_size"], r["local_rank"], r["node_rank"], r["num_nodes"]) == (2, rank, 0, 1)
        assert (r["is_global_zero"], r["num_devices"], r["strategy"]) == (rank == 0, 2, "DDPStrategy")
        assert r["sampler"] == "DistributedSampler" and r["train_batches"] == N_TRAIN // GLOBAL_BATCH
        assert r["model_is_module"]  # trainer.model is the LightningModule again after fit
        assert_weights(r["fit"], fit_ref)
        # sync_dist: every rank logs its rank; epoch reductions over both ranks and all steps
        m = r["fit_metrics"]
        assert (m["rank_mean"], m["rank_max"], m["rank_min"]) == (0.5, 1.0, 0.0)
        assert (m["rank_sum_step"], m["rank_sum_epoch"]) == (1.0, N_TRAIN // GLOBAL_BATCH)
        assert m["weighted"] == pytest.approx(0.75)  # rank 0: batch_size 1, rank 1: batch_size 3
        assert m.get("rank0_only") == (7.0 if rank == 0 else None)  # not synced: rank 0's own value
        assert m["train_loss_epoch"] == pytest.approx(sum(last_losses) / len(last_losses), abs=1e-5)
        assert m["val_loss"] == pytest.approx(val_loss(fit_ref), abs=1e-5)
        assert r["pbar_disabled"] == (rank != 0)
        assert r["best_model_path"] == str(out / "ckpt" / "epoch=1-step=8.ckpt")
        # resumed from last.ckpt (2 epochs) for a third: the same as 3 epochs in one process
        assert (r["resumed_epoch"], r["resumed_step"]) == (3, 12)
        assert_weights(r["resumed"], reference(epochs=3)[0])
        # accumulate_grad_batches=2: no_sync skips the all-reduce of the first micro-batch, same weights
        assert_weights(r["accumulated"], reference(epochs=1, batch=2 * GLOBAL_BATCH)[0])
        assert_weights(r["accumulated"], r["accumulated_no_sync_off"])
        assert (r["accumulated_allreduces"], r["accumulated_no_sync_off_allreduces"]) == (2, 4)
        assert r["validate"] == [{"val_loss": pytest.approx(val_loss(Regression().state_dict()), abs=1e-5)}]
        assert r["predictions"] == [float(i) for i in range(rank, 10, 2)]  # each sample once, no padding
        assert r["gathered"] == [[0, 0], [1, 10]] and r["gathered_dict"] == [0, 1]
        assert r["broadcast"] == ({"from": 0}, 1)
        assert r["reduced"] == {"mean": 1.5, "sum": 3.0, "max": 2.0, "min": 1.0}
        assert r["decisions"] == (True, False)
    # checkpoints and logs are written once, by rank 0
    assert len(ranks[0]["saves"]) == 4 and ranks[1]["saves"] == []
    assert sorted(os.listdir(out / "ckpt")) == ["epoch=1-step=8.ckpt", "last.ckpt"]
    assert os.listdir(out / "logs" / "lightning_logs") == ["version_0"]


def test_ddp_spawn_and_fork_return_results_to_the_main_process(runs: Runs) -> None:
    out = runs.succeeded("spawn")
    main = torch.load(out / "proc-0.pt", weights_only=False)  # written by the process the user started
    fit_ref = reference(epochs=2)[0]
    assert_weights(main["fit"], fit_ref)
    assert (main["state"], main["global_step"]) == ("finished", 2 * N_TRAIN // GLOBAL_BATCH)
    assert (main["fit_metrics"]["rank_mean"], main["fit_metrics"]["weighted"]) == (0.5, 0.75)
    assert main["best_model_path"] == str(out / "ckpt" / "epoch=1-step=8.ckpt")
    assert main["validate"] == [{"val_loss": pytest.approx(val_loss(fit_ref), abs=1e-5)}]  # run with ddp_fork
    assert not (out / "proc-1.pt").exists()  # the workers returned their results instead of running the script
    error = main["worker_error"]  # rank 1 raised in a ddp_fork fit: rank 1's traceback, not rank 0's echo
    assert error.startswith("ProcessRaisedException") and "-- Process 1 terminated" in error
    assert "in training_step" in error and "ValueError: rank 1 exploded at batch 2" in error


def test_torchrun_processes_join_the_job(runs: Runs) -> None:
    out = runs.succeeded("torchrun")
    fit_ref = reference(epochs=2)[0]
    for r in reports(out):
        assert (r["world_size"], r["node_rank"]) == (2, 0)
        assert_weights(r["fit"], fit_ref)
        assert r["validate"] == [{"val_loss": pytest.approx(val_loss(fit_ref), abs=1e-5)}]


def test_two_nodes_on_localhost(runs: Runs) -> None:
    """Two torchrun invocations (--nnodes=2) with one process each and Trainer(num_nodes=2, devices=1)."""
    out = runs.succeeded("nodes")
    fit_ref = reference(epochs=2)[0]
    for rank, r in enumerate(reports(out)):
        assert (r["world_size"], r["node_rank"]) == (2, rank)
        assert_weights(r["fit"], fit_ref)


def since(marker: str, output: str, ended: float) -> float:
    """Seconds from the moment the script printed ``marker <time>`` to the end of the job."""
    line = next(line for line in output.splitlines() if marker in line)
    return ended - float(line.split(marker)[1].split()[0])


def test_a_failing_rank_ends_the_job_with_its_traceback(runs: Runs) -> None:
    """Rank 1 raises: every process ends within seconds, and the process the user started raises
    ChildFailedError with rank 1's traceback (its own error, a broken connection, is only the echo)."""
    (code, output, ended), = runs.result("fail")
    assert code != 0 and "ChildFailedError" in output, output[-4000:]
    error = output.split("ChildFailedError")[1]
    assert "ValueError: rank 1 exploded at batch 2" in error and "in training_step" in error, output[-4000:]
    assert since("rank 1 raises at", output, ended) < 20


def test_a_hanging_rank_times_out_with_a_clear_error(runs: Runs) -> None:
    """Rank 1 sleeps in training_step: rank 0's gradient all-reduce times out (DDPStrategy(timeout=...)),
    rank 0 raises TimeoutError saying so, and rank 1 is stopped."""
    (code, output, ended), = runs.result("hang")
    assert code != 0, output[-4000:]
    assert "TimeoutError: Rank 0: a collective did not complete within the process-group timeout (0:00:20)" \
        in output, output[-4000:]
    assert HANG_TIMEOUT < since("rank 1 hangs at", output, ended) < HANG_TIMEOUT + 20
    assert str(runs.base / "hang") not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


# -- in-process: selection, environment, data ---------------------------------------------------------
@pytest.fixture
def restore_rank() -> Any:
    rank = rank_zero_only.rank  # type: ignore[attr-defined]
    yield
    rank_zero_only.rank = rank  # type: ignore[attr-defined]


def make(tmp_path: Path, **kwargs: Any) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("name, start_method, unused", [
    ("ddp", "popen", False), ("ddp_find_unused_parameters_true", "popen", True), ("ddp_spawn", "spawn", False),
    ("ddp_fork", "fork", False), ("ddp_notebook", "fork", False), ("ddp_spawn_find_unused_parameters_true",
                                                                   "spawn", True)])
def test_strategy_names(tmp_path: Path, restore_rank: Any, name: str, start_method: str, unused: bool) -> None:
    trainer = make(tmp_path, strategy=name, devices=2)
    strategy = trainer.strategy
    assert isinstance(strategy, DDPStrategy)
    assert (strategy._start_method, strategy._ddp_kwargs["find_unused_parameters"]) == (start_method, unused)
    assert (strategy.launcher is None) == (start_method == "popen")
    assert (trainer.world_size, trainer.global_rank, trainer.num_devices, trainer.device_ids) == (2, 0, 2, [0, 1])


def test_auto_picks_ddp_for_several_devices_or_nodes(tmp_path: Path, restore_rank: Any) -> None:
    assert isinstance(make(tmp_path, devices=2).strategy, DDPStrategy)
    trainer = make(tmp_path, num_nodes=2)
    assert isinstance(trainer.strategy, DDPStrategy) and (trainer.world_size, trainer.num_nodes) == (2, 2)
    assert isinstance(make(tmp_path, devices=1).strategy, SingleDeviceStrategy)
    assert isinstance(make(tmp_path, strategy=DDPStrategy(), devices=3).strategy, DDPStrategy)
    assert make(tmp_path, strategy=DDPStrategy(), devices=3).world_size == 3


def test_strategies_that_are_not_there_yet(tmp_path: Path) -> None:
    for name in ("xla", "model_parallel"):
        with pytest.raises(NotImplementedError, match=rf"strategy='{name}'.*not available yet"):
            make(tmp_path, strategy=name)
    with pytest.raises(ValueError, match="runs one process on one device.*strategy='ddp'"):
        make(tmp_path, strategy="single_device", devices=2)
    with pytest.raises(MisconfigurationException, match=r"num_nodes=0.*int >= 1"):
        make(tmp_path, num_nodes=0)


def test_sync_batchnorm(tmp_path: Path, restore_rank: Any) -> None:
    make(tmp_path, sync_batchnorm=True)  # one process: plain BatchNorm already sees the whole batch
    with pytest.raises(MisconfigurationException, match=r"sync_batchnorm=True.*GPUs only"):
        make(tmp_path, strategy="ddp", devices=2, sync_batchnorm=True)
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3), torch.nn.Sequential(
        torch.nn.BatchNorm2d(3)))
    types = {name: type(m) for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    weight = model[1].weight
    torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(model[1], torch.nn.SyncBatchNorm) and isinstance(model[2][0], torch.nn.SyncBatchNorm)
    _revert_sync_batchnorm(model, types)
    assert type(model[1]) is torch.nn.BatchNorm1d and type(model[2][0]) is torch.nn.BatchNorm2d
    assert model[1].weight is weight  # the optimizer's parameters survive the round trip


def test_joins_a_job_that_torchrun_started(tmp_path: Path, restore_rank: Any, monkeypatch: Any) -> None:
    for key, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                       "GROUP_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234",
                       "TORCHELASTIC_RUN_ID": "x"}.items():
        monkeypatch.setenv(key, value)
    trainer = make(tmp_path, strategy="ddp_spawn", devices=2, num_nodes=2)  # under torchrun: joins, as "ddp"
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank, trainer.world_size) == (3, 1, 1, 4)
    assert trainer.strategy.launcher is None and not trainer.is_global_zero
    assert rank_zero_only.rank == 3  # type: ignore[attr-defined]
    with pytest.raises(MisconfigurationException, match=r"asks for 2 processes, but torchrun started 4"):
        make(tmp_path, strategy="ddp", devices=2)


def test_slurm_environment(monkeypatch: Any) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NODEID": "1",
                       "SLURM_JOB_NAME": "train", "SLURM_NODELIST": "gpu[07-09,12],cpu01", "SLURM_JOB_ID": "12345"}.items():
        monkeypatch.setenv(key, value)
    cluster = _detect_cluster()
    assert cluster is not None and cluster.name == "SLURM"
    assert (cluster.world_size, cluster.global_rank, cluster.local_rank, cluster.node_rank) == (4, 2, 0, 1)
    assert (cluster.main_address, cluster.main_port) == ("gpu07", 10000 + 12345 % 20000)
    monkeypatch.setenv("SLURM_JOB_NAME", "bash")  # an interactive allocation: ember starts the processes
    assert _detect_cluster() is None
    assert _first_slurm_host("node1") == "node1" and _first_slurm_host("a[3-4]") == "a3"


def loader(**kwargs: Any) -> DataLoader:
    return DataLoader(TensorDataset(torch.arange(10.0)), batch_size=2, **kwargs)


def test_distributed_sampler_injection(tmp_path: Path, restore_rank: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    shuffled = _distributed_dataloader(loader(shuffle=True, drop_last=True), "train", num_replicas=2, rank=1)
    sampler = shuffled.sampler
    assert isinstance(sampler, DistributedSampler) and (sampler.shuffle, sampler.seed, sampler.rank) == (True, 7, 1)
    assert (shuffled.batch_size, shuffled.drop_last) == (2, True)
    ordered = _distributed_dataloader(loader(), "val", num_replicas=2, rank=0)
    assert not ordered.sampler.shuffle and [b[0].tolist() for b in ordered] == [[0, 2], [4, 6], [8]]
    own = loader(sampler=SubsetRandomSampler(range(10)))
    assert _distributed_dataloader(own, "train", 2, 0).sampler is own.sampler  # the user's own sampler: kept
    predict = _distributed_dataloader(DataLoader(TensorDataset(torch.arange(5.0))), "predict", 2, 1)
    assert [b[0].item() for b in predict] == [1.0, 3.0]  # no padding sample
    # through the Trainer: injected unless use_distributed_sampler=False
    for flag, expected in ((True, DistributedSampler), (False, RandomSampler)):
        trainer = make(tmp_path, strategy="ddp", devices=2, use_distributed_sampler=flag)
        trainer._sources = {"train": loader(shuffle=True)}
        trainer._setup_train_data()
        assert type(trainer.train_dataloader.sampler) is expected


def test_sync_dist_sum_counts_each_rank_once() -> None:
    """The epoch total of an on_step+on_epoch "sum" is reduced once (two identical ranks, simulated)."""
    from ember.metrics import _Results

    twice = lambda t, op: t * 2 if op == "sum" else t  # noqa: E731  (all_reduce over 2 identical ranks)
    results = _Results(training=True)
    for step in range(3):
        results.new_batch(torch.zeros(4, 1))
        for name, value, reduce_fx in (("s", 1.0, "sum"), ("m", float(step), "mean")):
            # self.log's options: prog_bar, logger, on_step, on_epoch, reduce_fx, ..., sync_dist, ...
            args = (False, True, True, True, reduce_fx, False, True, None, True, None, False)
            results.log("training_step", name, torch.tensor(value), args, (True, True), None, twice)
    logged, _, _ = results.metrics(on_step=False)
    assert (logged["s_epoch"].item(), logged["m_epoch"].item()) == (6.0, 1.0)
    assert results.metrics(on_step=True)[0]["s_step"].item() == 2.0
