"""Peak memory of analysing a model offloaded to disk (accelerate ``dispatch_model``, every block's
weights on disk, loaded by accelerate's hooks only while a block runs), side by side with the
same model kept whole in memory, against the size of its largest layer and of all its weights.

Each case runs in a fresh process; the peak is the process's anonymous resident memory (tensors:
file-backed pages of the offload folder are not counted), sampled every millisecond from
/proc/self/status during ``resprobe.analyze``, above where it stood before: once for the probes
that run forward passes only (verify, lesions), once for those that also run backward
(refinement, gradients). glibc returns every large block when freed (MALLOC_MMAP_THRESHOLD_), so
the resident size follows the tensors alive.

Run:  python benchmarks/offload.py        (Linux; accelerate installed)

Target: forward passes on the offloaded model hold about one layer's weights at a time, plus
activations and per-block scalars: a small multiple of the largest layer, far under the whole
model. A backward pass needs each layer's weights again (autograd saves them in the forward
pass), so through offloaded layers it holds them all, as any backward pass does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import torch
from torch import Tensor, nn

WIDTH, BLOCKS = 2048, 16  # 16 MB per linear layer, 32 linear layers: 537 MB of weights


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.up = nn.Linear(WIDTH, WIDTH)
        self.down = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.down(torch.relu(self.up(self.norm(x))))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[Block() for _ in range(BLOCKS)])


def _anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


PROBES = {"forward": ("verify", "lesion"), "backward": ("refinement", "gradients")}


def peak(offloaded: bool, passes: str) -> int:
    import resprobe

    net = model().eval()
    x = torch.randn(4, WIDTH)
    folder = tempfile.mkdtemp()
    if offloaded:
        from accelerate import dispatch_model

        net = dispatch_model(net, device_map={str(k): "disk" for k in range(BLOCKS)}, offload_dir=folder)
    before, top, done = _anon(), [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            top[0] = max(top[0], _anon())
            time.sleep(0.001)

    sampler = threading.Thread(target=watch)
    sampler.start()
    try:
        resprobe.analyze(net, x, probes=PROBES[passes])
    finally:
        done.set()
        sampler.join()
    return max(top[0], _anon()) - before


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--peak":
        print(json.dumps(peak(sys.argv[2] == "offloaded", sys.argv[3])))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}

    def run(kind: str, passes: str) -> int:
        out = subprocess.run([sys.executable, __file__, "--peak", kind, passes], capture_output=True,
                             text=True, check=True, env=env)
        return int(json.loads(out.stdout.strip().splitlines()[-1]))

    layer = WIDTH * WIDTH * 4 + WIDTH * 4
    weights = sum(p.numel() * p.element_size() for p in model().parameters())
    mb = 1e6
    print(f"largest layer {layer / mb:.0f} MB, all weights {weights / mb:.0f} MB")
    print(f"{'':44} {'peak above start':>17} {'/ largest layer':>16} {'/ all weights':>14}")
    for passes, what in (("forward", "verify + lesions (forward passes)"),
                         ("backward", "refinement + gradients (forward + backward)")):
        for kind in ("whole", "offloaded"):
            value = run(kind, passes)
            name = f"{what[:27]:27} {'whole' if kind == 'whole' else 'on disk':>8}"
            print(f"{name:44} {value / mb:15.0f} MB {value / layer:15.1f}x {value / weights:13.2f}x")


if __name__ == "__main__":
    main()
