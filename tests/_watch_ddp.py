"""Run under ``torchrun --nproc-per-node N`` (gloo): train a residual MLP with DDP, watched, on
the global batch split by rank; rank 0's records go to the folder given. Without torchrun, the
same training on the whole global batch in one process (the reference)."""

from __future__ import annotations

import os
import sys

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import resprobe


class Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.tanh(self.fc(self.norm(x)))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), *[Block(16) for _ in range(4)], nn.Linear(16, 3))


def main(log_dir: str) -> None:
    distributed = "RANK" in os.environ
    if distributed:
        torch.distributed.init_process_group("gloo")
    dist = torch.distributed
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    net = model()
    trained: nn.Module = nn.parallel.DistributedDataParallel(net) if distributed else net
    opt = torch.optim.SGD(trained.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]
    with resprobe.watch(trained, every=2, log_dir=log_dir, optimizer=opt, tensorboard=False):
        for x, y in batches:
            part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
            opt.zero_grad()
            F.cross_entropy(trained(x[part]), y[part]).backward()
            opt.step()
    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
