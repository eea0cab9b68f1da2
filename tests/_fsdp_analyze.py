"""Run under ``torchrun --nproc-per-node 2`` (gloo): a residual MLP sharded with FSDP2
(``fully_shard`` on every block and the root), analysed in every process; each rank writes its
numbers and whether FSDP's hooks are as found to ``OUT/rank<N>.json``."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from _watch_ddp import Block  # the same residual MLP block
from torch import Tensor, nn

import resprobe

PROBES = ("verify", "refinement", "gradients", "depth")


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), *[Block(16) for _ in range(4)], nn.Linear(16, 3))


def inputs() -> Tensor:
    return torch.randn(8, 6, generator=torch.Generator().manual_seed(1))


def numbers(report: resprobe.Report) -> dict[str, object]:
    return {"blocks": {b.name: {**b.metrics["refinement"], **b.metrics["gradients"]} for b in report.blocks},
            "verified": report.result("verify").summary.get("passed"),  # type: ignore[union-attr]
            "depth": report.result("depth").summary["streams"][0]["effective_depth"],  # type: ignore[union-attr]
            "notes": [n for r in report.results for n in r.notes]}


def main(out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo")
    net = model()
    for block in net[1:5]:
        fully_shard(block)
    fully_shard(net)
    def hooks() -> list[tuple[dict[int, object], dict[int, object]]]:
        return [(dict(m._forward_pre_hooks), dict(m._forward_hooks)) for m in net.modules()]

    before = hooks()
    got = numbers(resprobe.analyze(net, inputs(), probes=PROBES))
    got["hooks_as_found"] = hooks() == before
    with open(f"{out}/rank{dist.get_rank()}.json", "w") as f:
        json.dump(got, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
