"""Each process owns its GPU (wrn.runtime.bind_device), shown on a stand-in node of 4 GPUs that
compute on the CPU (tests/hooks/cuda_standin.py): which GPU a process binds, places its tensors on,
joins NCCL with, hands to DistributedDataParallel and keeps the generator state of, under the local
executor, torchrun and SLURM's two ways of giving a task its GPUs; and a checkpoint written with 4
GPUs visible resumes with 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cuda_standin import read_log
from experiments import store
from experiments.executors import plan_slots, run_local
from wrn import checkpoint
from wrn.config import RunConfig, resolve
from wrn.data import imagenet
from wrn.data.fake import write_fake_dataset
from wrn.data.imagenet import ImageNetPipeline
from wrn.files import atomic_write_json
from wrn.models import build_model
from wrn.runtime import bind_device, host_to_device, pick_device, runtime_settings, set_cuda_switches
from wrn.sync_batchnorm import synchronise_batch_norm
from wrn.timing import measure_step_time
from wrn.train import TrainingInterrupted, train

pytestmark = pytest.mark.slow  # runs of several processes on the stand-in GPUs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "tests" / "hooks"
GPUS = 4  # the stand-in node of tests/conftest.py
# What a training process asks of its GPU: binding it, putting tensors on it, reading its generator
# and waiting for it; a distributed one also joins NCCL with it and gives it to DistributedDataParallel.
TRAINING_EVENTS = {"set_device", "tensor", "rng_get", "synchronize"}
DISTRIBUTED_EVENTS = TRAINING_EVENTS | {"init_process_group", "ddp"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_fake_dataset("cifar10", root, n_train=96, n_test=48, seed=0)
    return root


def tiny(**overrides) -> RunConfig:
    base = dict(dataset="cifar10", data_source="synthetic:96:48", depth=10, k=1, preprocessing="meanstd",
                epochs=2, batch_size=16, eval_batch_size=24, lr_milestones=(2,), seed=0, dropout=0.3)
    base.update(overrides)
    return resolve(RunConfig(**base))


# ------------------------------------------------------------------------------------------------
# One process


@pytest.mark.parametrize("visible, local_rank, name, gpu", [
    (None, 0, "cuda", 0), (None, 3, "cuda", 3), (None, 2, "auto", 2), (None, 1, None, 1),  # torchrun
    ("2", 2, "cuda", 2), ("3", 3, "auto", 3),  # the local executor's and SLURM's per-task binding
    ("1,3", 1, "cuda", 3),  # two GPUs per node, the second process
    (None, 0, "cuda:2", 2), ("0,2", 0, "cuda:1", 2),  # an explicit index is kept
])
def test_a_process_binds_its_own_gpu_whatever_the_device_string(cuda_node, visible, local_rank, name, gpu):
    standin = cuda_node(visible, local_rank)
    device = bind_device(name)
    assert device.type == "cuda" and device.index is not None
    assert standin.visible[device.index] == gpu
    assert standin.gpus("set_device") == {gpu} and standin.visible[torch.cuda.current_device()] == gpu


def test_picking_a_device_binds_nothing_and_the_cpu_binds_nothing(cuda_node):
    standin = cuda_node(None, 3)
    assert pick_device("cuda") == torch.device("cuda", 3)
    assert bind_device("cpu") == torch.device("cpu")
    assert standin.events == []


def test_the_engine_puts_everything_on_its_process_gpu(cuda_node, tmp_path, data_dir):
    standin = cuda_node(None, local_rank=3)
    result = train(tiny(epochs=1), tmp_path / "run", data_dir, device="cuda", progress=False)
    assert result.status == "done" and result.runtime.device_name.endswith(" 3")
    assert {e["event"] for e in standin.events} >= TRAINING_EVENTS | {"pin"}
    assert {e["gpu"] for e in standin.events} == {3}


def test_a_checkpoint_written_with_four_gpus_visible_resumes_with_one(cuda_node, tmp_path, data_dir):
    """A run stopped under torchrun (4 GPUs visible, the third process's) resumes under the local
    executor, which shows it that one GPU: the checkpoint holds the generator of the run's own GPU,
    says which, and is restored onto the GPU the resume binds; the result equals an uninterrupted run's
    (dropout draws from that generator on a real GPU)."""
    cfg = tiny()
    cuda_node(None, local_rank=2)
    straight = train(cfg, tmp_path / "straight", data_dir, device="cuda", progress=False)

    standin = cuda_node(None, local_rank=2)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 4

    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "resumed", data_dir, device="cuda", should_stop=stop, progress=False)
    saved = checkpoint.load_latest(tmp_path / "resumed")["rng"]
    assert saved["cuda_device"] == "cuda:2" and torch.equal(saved["cuda"], standin.rng[2])

    standin = cuda_node("2", local_rank=0)
    resumed = train(cfg, tmp_path / "resumed", data_dir, device="cuda", progress=False)
    restored = [e for e in standin.events if e["event"] == "rng_set"]
    assert [(e["gpu"], e["state"]) for e in restored] == [(2, saved["cuda"].tolist())]
    assert resumed.final == straight.final


def test_a_cpu_checkpoint_resumes_on_a_gpu_with_its_generator_as_seeded(cuda_node, tmp_path, data_dir):
    cfg = tiny()
    with pytest.raises(TrainingInterrupted):
        train(cfg, tmp_path / "run", data_dir, device="cpu", should_stop=lambda: True, progress=False)
    standin = cuda_node(None, local_rank=1)
    assert train(cfg, tmp_path / "run", data_dir, device="cuda", progress=False).status == "done"
    assert standin.gpus("rng_set") == set()


# ------------------------------------------------------------------------------------------------
# The processes of a 4-GPU run, as each launcher starts them


def make_run(results: Path) -> Path:
    cfg = tiny(world_size=GPUS, epochs=1)
    path = store.run_dir(results, store.run_id(cfg))
    path.mkdir(parents=True)
    atomic_write_json(path / store.CONFIG, {"run_id": path.name, "spec": "s", "label": "WRN-10-1", "kind": "train",
                                            "config": cfg.to_dict(), "created_at": "now"})
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def standin_env(monkeypatch, tmp_path):
    """Every process started from here sees a stand-in node of GPUS GPUs and logs to the returned file."""
    log = tmp_path / "cuda.jsonl"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HOOKS), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("WRN_TEST_FAKE_CUDA", str(GPUS))
    monkeypatch.setenv("WRN_TEST_CUDA_LOG", str(log))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return log


def launch_local(run: Path, data_dir: Path, monkeypatch) -> None:
    """The local executor: one slot per GPU, each process pinned to one through CUDA_VISIBLE_DEVICES."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: GPUS)
    slots = plan_slots(None)
    assert [s.gpu for s in slots] == list(range(GPUS))
    counts = run_local([run], data_dir, slots, log=lambda line: None)
    assert counts["done"] == 1, (run / "train.log").read_text()


def launch_torchrun(run: Path, data_dir: Path, monkeypatch) -> None:
    """torchrun on one node: every process sees the node's GPUs and gets LOCAL_RANK."""
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(GPUS),
                    "--master-port", str(free_port()), "-m", "experiments.worker", str(run),
                    "--data-dir", str(data_dir)], cwd=ROOT, check=True, timeout=300, capture_output=True)


SLURM_TASK = ("import sys; from experiments.slurm_jobs import SlurmRunJob; "
              "print(SlurmRunJob(sys.argv[2], 1)(sys.argv[1]))")


def slurm_launcher(per_task_binding: bool):
    """One SLURM task per process on one node, as srun starts them (SLURM_PROCID, SLURM_LOCALID, ...),
    each running the suite's array-task callable, which exports torch's variables through submitit.
    With per-task binding (`--gpus-per-task`) each task sees its own GPU; with `--gpus-per-node`, the
    suite's default, every task sees the node's."""

    def launch(run: Path, data_dir: Path, monkeypatch) -> None:
        port = str(free_port())
        procs = []
        for rank in range(GPUS):
            env = dict(os.environ, SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="77", SLURM_NTASKS=str(GPUS), SLURM_JOB_NUM_NODES="1",
                       SLURM_NODEID="0", SLURM_JOB_NODELIST="127.0.0.1", SLURM_PROCID=str(rank),
                       SLURM_LOCALID=str(rank), MASTER_PORT=port)
            if per_task_binding:
                env["CUDA_VISIBLE_DEVICES"] = str(rank)
            procs.append(subprocess.Popen([sys.executable, "-c", SLURM_TASK, str(run), str(data_dir)], cwd=ROOT,
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err[-6000:] for _, err in outputs]

    return launch


@pytest.mark.parametrize("launch", [launch_local, launch_torchrun, slurm_launcher(True), slurm_launcher(False)],
                         ids=["local-executor", "torchrun", "slurm-gpus-per-task", "slurm-gpus-per-node"])
def test_each_rank_of_a_four_gpu_run_uses_its_own_gpu(launch, standin_env, tmp_path, data_dir, monkeypatch):
    run = make_run(tmp_path / "results")
    launch(run, data_dir, monkeypatch)
    assert json.loads((run / store.RESULT).read_text())["status"] == "done"
    events = read_log(standin_env)
    by_rank: dict[int, dict[str, set[int]]] = {}
    for e in events:
        if e["rank"] is None:  # torchrun's own agent process, which trains nothing
            continue
        by_rank.setdefault(int(e["rank"]), {}).setdefault(e["event"], set()).add(e["gpu"])
    assert sorted(by_rank) == list(range(GPUS))
    for rank, used in by_rank.items():
        assert set(used) >= DISTRIBUTED_EVENTS, (rank, used)
        assert all(gpus == {rank} for gpus in used.values()), (rank, used)


# ------------------------------------------------------------------------------------------------
# The CUDA-only choices, each small and named


def test_the_cuda_switches_follow_the_config():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        for tf32 in (True, False):
            set_cuda_switches(tf32)
            assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (tf32, tf32)
            assert torch.backends.cudnn.benchmark
    finally:
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = saved


def test_a_host_copy_to_a_gpu_is_pinned_and_keeps_its_values(cuda_node):
    source = torch.arange(10)
    assert torch.equal(host_to_device(source, torch.device("cpu")), source)
    standin = cuda_node(None, local_rank=1)
    device = bind_device("cuda")
    assert torch.equal(host_to_device(source, device), source)
    assert standin.gpus("pin") == {1} and standin.gpus("tensor") == {1}


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    write_fake_dataset("imagenet", root, 20, 10, seed=0)
    return root


def test_nvjpeg_decodes_on_the_rank_gpu_the_batches_the_cpu_path_makes(cuda_node, monkeypatch, imagenet_dir):
    """The tensor path on a GPU decodes in the training process (nvJPEG, here the CPU decoder) with the
    process's own GPU current, since nvJPEG works on the current device's stream, and makes the
    batches the CPU path makes in its workers."""
    cfg = resolve(RunConfig(dataset="imagenet", arch="wrn50_2_bottleneck", depth=50, k=2, batch_size=8,
                            eval_batch_size=4, image_size=24, input_pipeline="tensor", world_size=2))
    on_cpu = [b for b in ImageNetPipeline(cfg, imagenet_dir, torch.device("cpu"), workers=1, rank=1).train_batches(1)]
    standin = cuda_node(None, local_rank=1)
    device = bind_device("cuda")
    torch.cuda.set_device(0)  # whatever else made GPU 0 current: the decoder still runs on the rank's
    decoded_on = []
    real_decode = imagenet.decode_jpeg

    def decode(payloads, mode, device):
        decoded_on.append((standin.visible[torch.cuda.current_device()], standin.physical(device)))
        return real_decode(payloads, mode=mode, device="cpu")

    monkeypatch.setattr(imagenet, "decode_jpeg", decode)
    on_gpu = list(ImageNetPipeline(cfg, imagenet_dir, device, workers=1, rank=1).train_batches(1))
    assert decoded_on and set(decoded_on) == {(1, 1)}
    assert len(on_gpu) == len(on_cpu) and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                              for a, b in zip(on_gpu, on_cpu))


def test_the_settings_of_a_gpu_run(cuda_node):
    """On CUDA "auto" is bf16 in channels_last (the fast profile); fp32 keeps NCHW; the name is the GPU's."""
    cuda_node(None, local_rank=1)
    device = bind_device("cuda")
    fp32 = runtime_settings(tiny(), device)
    auto = runtime_settings(tiny(precision="auto"), device)
    assert (fp32.device, fp32.device_name, fp32.precision, fp32.channels_last) == ("cuda", "Stand-in GPU 1", "fp32", False)
    assert (auto.precision, auto.channels_last) == ("bf16", True)


def test_sync_bn_on_a_gpu_is_torchs_sync_batchnorm(cuda_node):
    model = synchronise_batch_norm(build_model(tiny(world_size=2)), torch.device("cuda", 0))
    kinds = {type(m) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    assert kinds == {torch.nn.SyncBatchNorm}


def test_figure_4s_timing_on_a_gpu_times_with_cuda_events(cuda_node):
    standin = cuda_node(None, local_rank=3)
    result = measure_step_time(tiny(), batch_size=4, warmup=1, repeats=3, device="cuda", progress=False)
    assert result.timing.repeats == 3 and result.timing.ms_median > 0 and result.runtime.device == "cuda"
    assert standin.gpus("set_device") == standin.gpus("tensor") == standin.gpus("synchronize") == {3}
