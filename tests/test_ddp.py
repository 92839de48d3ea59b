"""Data parallelism: one DDP step on two CPU processes (gloo) equals one single-process step on the whole batch."""

import subprocess, sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parent / "fixtures" / "ddp_step.py"


def test_ddp_step_matches_single_process(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    single, ddp = tmp_path / "single.safetensors", tmp_path / "ddp.safetensors"
    subprocess.run([sys.executable, str(SCRIPT), str(single)], check=True, env=env, timeout=300)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29571",
            str(SCRIPT),
            str(ddp),
        ],
        check=True,
        env=env,
        timeout=300,
    )
    a, b = load_file(str(single)), load_file(str(ddp))
    assert a.keys() == b.keys() and any("lora_factors" in k for k in a)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-12), (k, float((a[k] - b[k]).abs().max()))
