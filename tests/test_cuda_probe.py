"""Without a usable GPU, torch's optimizers stop asking the NVIDIA driver for devices at every step (Lightning's
NVML-based check makes each ``torch.cuda.is_available()`` load the driver's library again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO

STEPS = 20
PROBE = f"""
import ctypes, json, os
import lightning  # sets PYTORCH_NVML_BASED_CUDA_CHECK=1, as every training command does
import torch
from lightning_mnist.training.cuda_probe import stop_probing_for_cuda

loads = []
original = ctypes.CDLL.__init__
ctypes.CDLL.__init__ = lambda self, name, *a, **k: (loads.append(name), original(self, name, *a, **k))[1]
weight = torch.nn.Parameter(torch.ones(3))
adam = torch.optim.Adam([weight], fused=True)

def steps():
    del loads[:]
    for _ in range({STEPS}):
        weight.grad = torch.ones(3)
        adam.step()
    return len(loads)

available = torch.cuda.is_available()
before = steps()
hidden = stop_probing_for_cuda()
after = steps()
print(json.dumps(dict(available=available, before=before, hidden=hidden, after=after,
                      visible=os.environ.get("CUDA_VISIBLE_DEVICES"), still=torch.cuda.is_available(),
                      weight=weight.tolist())))
"""


def probe(**env) -> dict:
    environment = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run([sys.executable, "-c", PROBE], env={**environment, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def test_no_gpu_means_no_driver_query_per_optimizer_step():
    seen = probe()
    if seen["available"]:  # a GPU: nothing is hidden, nothing changes
        assert not seen["hidden"] and seen["visible"] is None and seen["still"]
        return
    assert seen["hidden"] and seen["visible"] == "" and not seen["still"]
    assert seen["before"] in (0, STEPS)  # a CUDA build of torch: one library load a step (a CPU build: none)
    assert seen["after"] == 0
    assert seen["weight"] == probe(CUDA_VISIBLE_DEVICES="")["weight"]  # the same steps, the same weights


def test_the_users_choice_of_devices_is_kept():
    seen = probe(CUDA_VISIBLE_DEVICES="0")
    assert not seen["hidden"] and seen["visible"] == "0"
