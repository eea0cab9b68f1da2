"""Watch a 24-block residual network and its plain twin train on scikit-learn's digits, and write
the evidence page docs/gallery/watch-digits.md from what was measured.

Run:  python scripts/watch_evidence.py          (needs scikit-learn; about 3 minutes on one CPU thread)
      python scripts/watch_evidence.py --page   (the run report and the page again, from the files)

Both networks are ``resprobe.examples.DeepDigitsNet`` (24 blocks of two 3x3 convolutions; the plain
one has the same blocks without skips), trained with the recipe of scripts/train_depth.py (AdamW,
lr 3e-3, cosine schedule, batches of 64) for fewer epochs, from the same initial weights and on the
same batches in the same order.

- The residual network is watched with ``resprobe.watch(every=EVERY, iterative=True)``: its record
  and run report go to docs/gallery/watch-digits-deep-resnet/ (run-report.md, and the HTML page
  as standalone.html, the gallery's name for it: the docs site builds run-report.html from the
  Markdown).
- The plain network has no residual joins, so resprobe finds no block in it to watch. At the same
  steps, a forward hook on each block's ``bn2`` hangs a tensor hook on its output and records the
  mean over samples of the per-sample norm of the gradient there: the point where the residual
  twin adds its skip (its join), so the numbers compare with watch's ``grad_norm`` (the gradient at
  the join is the gradient at ``bn2``'s output). The same hooks run on the residual network too, as
  a check of watch's numbers. Both go to ``gradients.json`` in each network's folder, with the
  training loss and held-out accuracy per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import resprobe
from resprobe.examples import DeepDigitsNet
from resprobe.render.run import run_html, run_markdown
from resprobe.runlog import Run, read_run

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"
RESNET = "watch-digits-deep-resnet"
PLAIN = "watch-digits-deep-plain"
PAGE = "watch-digits.md"
GRADIENTS = "gradients.json"
# run_html's page, named as in the rest of the gallery: a run-report.html beside run-report.md would
# clash with the page the docs site builds from the Markdown (and be left out of the site).
HTML = "standalone.html"
EPOCHS, EVERY, BATCH, SEED = 30, 12, 64, 0
BLOCKS = [f"layers.{i}" for i in range(24)]
# A gradient norm at the first block this many times below (above) the last one is called vanishing
# (growing) towards the input; in between, roughly flat.
FACTOR = 2.0


# -- measuring ------------------------------------------------------------------------------------
class JoinGradients:
    """Per block, ``mean over samples of ‖∂L/∂(bn2 output)‖`` of the passes run while ``armed``."""

    def __init__(self, blocks: Sequence[nn.Module]):
        self.armed = False
        self.norms: list[float | None] = [None] * len(blocks)
        self.handles = [b.get_submodule("bn2").register_forward_hook(self._forward(i))
                        for i, b in enumerate(blocks)]

    def _forward(self, i: int) -> Callable[[nn.Module, Any, Tensor], None]:
        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            if self.armed and output.requires_grad:
                output.register_hook(lambda grad: self._backward(i, grad))
        return hook

    def _backward(self, i: int, grad: Tensor) -> None:
        per_sample = grad.detach().double().flatten(1).norm(dim=1)
        self.norms[i] = float(per_sample.mean())

    def take(self) -> list[float | None]:
        got, self.norms = self.norms, [None] * len(self.norms)
        return got

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def train(model: DeepDigitsNet, data: tuple[Tensor, Tensor, Tensor, Tensor], epochs: int, every: int,
          seed: int, watch_dir: Path | None) -> dict[str, Any]:
    """Train ``model`` (the recipe of scripts/_digits.py, batches drawn from a generator of its own
    so both networks see the same order); hook gradients every ``every`` steps, and watch the
    model with resprobe into ``watch_dir`` when given."""
    x, y, test, rest = data
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    order = torch.Generator().manual_seed(seed)
    hooks = JoinGradients(list(model.layers))
    watch = resprobe.watch(model, every=every, log_dir=watch_dir, tensorboard=False, iterative=True) \
        if watch_dir is not None else None
    steps: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    step, started, watched_time = 0, time.time(), 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        losses = []
        for idx in rest[torch.randperm(len(rest), generator=order)].split(BATCH):
            due = step % every == 0
            hooks.armed = due
            t = time.time()
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            record = watch.step() if watch is not None else None
            if watch is not None and (record is not None) != due:
                raise RuntimeError(f"step {step}: watch measured {record is not None}, expected {due}")
            if due:
                watched_time += time.time() - t
                steps.append({"step": step, "loss": round(loss.item(), 6),
                              "grad_norm": [None if v is None else float(f"{v:.8g}") for v in hooks.take()]})
            losses.append(loss.item())
            step += 1
        sched.step()
        curve.append({"epoch": epoch, "train_loss": round(sum(losses) / len(losses), 6),
                      "accuracy": round(_accuracy(model, x[test], y[test]), 6)})
    if watch is not None:
        watch.close()
    hooks.close()
    print(f"  {step} steps in {time.time() - started:.0f} s ({len(steps)} measured, "
          f"{watched_time / max(len(steps), 1):.3f} s each)", flush=True)
    return {"model": f"DeepDigitsNet(residual={model.layers[0].residual})", "blocks": BLOCKS,
            "measured_at": "the output of each block's bn2 (where the residual network adds its skip)",
            "every": every, "epochs": epochs, "batch": BATCH, "steps_total": step, "steps": steps,
            "curve": curve, "accuracy": curve[-1]["accuracy"]}


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# -- the numbers the page states ----------------------------------------------------------------------
def ratio(norms: Sequence[float | None]) -> float:
    """The gradient norm at the first block over that at the last one."""
    first, last = norms[0], norms[-1]
    assert first is not None and last is not None and last > 0
    return first / last


def trend(r: float) -> str:
    """What a first/last ratio says, in words."""
    if r < 1 / FACTOR:
        return f"vanishing towards the input ({1 / r:.1f}× smaller at the first block)"
    if r > FACTOR:
        return f"growing towards the input ({r:.1f}× larger at the first block)"
    return "roughly flat along depth"


def chosen(n: int) -> list[int]:
    """The indices of the first, middle and last measured step (the run report's choice)."""
    return sorted({0, (n - 1) // 2, n - 1})


def depth_rows(n: int) -> list[int]:
    """The measured steps the effective-depth table shows: about ten, the last included."""
    return sorted(set(range(0, n, max(n // 10, 1))) | {n - 1})


def _depth_said(last: float) -> str:
    if last < 24 / 2:
        return "At the end, under half of the 24 blocks the network nominally has."
    return "At the end, at least half of the 24 blocks the network nominally has."


def watch_norms(run: Run, k: int) -> list[float | None]:
    return [run.steps[k].value(b, "grad_norm") for b in BLOCKS]


def stage_mean(values: Sequence[float | None], stage: int) -> float:
    got = [v for v in values[8 * stage:8 * stage + 8] if v is not None]
    return sum(got) / len(got)


def labels(run: Run, k: int) -> dict[str, int]:
    out = {"refine": 0, "rebuild": 0, "idle": 0}
    for b in BLOCKS:
        v = run.steps[k].blocks[b].get("label")
        if isinstance(v, str):
            out[v] += 1
    return out


def changes(run: Run) -> list[tuple[str, str, str, int]]:
    """Every label change: block, from, to, the first measured step where the new label held."""
    out = []
    for b in BLOCKS:
        last: str | None = None
        for s in run.steps:
            now = s.blocks[b].get("label")
            if isinstance(now, str):
                if last is not None and now != last:
                    out.append((b, last, now, s.step))
                last = now
    return out


def check(run: Run, hooked: dict[str, Any]) -> tuple[float, float]:
    """The largest absolute and relative difference between watch's grad_norm and the hooks' on
    the residual network, over every measured step and block (watch stores 8 decimal places)."""
    assert [s.step for s in run.steps] == [s["step"] for s in hooked["steps"]]
    worst, relative = 0.0, 0.0
    for s, h in zip(run.steps, hooked["steps"]):
        for b, v in zip(BLOCKS, h["grad_norm"]):
            w = s.value(b, "grad_norm")
            assert w is not None and v is not None
            worst, relative = max(worst, abs(w - v)), max(relative, abs(w - v) / v)
    return worst, relative


# -- the page ---------------------------------------------------------------------------------------------
def _e(v: float | None) -> str:
    return "–" if v is None else f"{v:.3e}"


def _f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], tag: str) -> list[str]:
    return [f"<!-- table:{tag} -->", "", "| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def page(run: Run, resnet: dict[str, Any], plain: dict[str, Any]) -> str:
    """The evidence page, every number read from the run record and the two gradients files."""
    n = len(run.steps)
    ks = chosen(n)
    first, last = run.steps[0], run.steps[-1]
    steps = [run.steps[k].step for k in ks]
    assert [s["step"] for s in plain["steps"]] == [s.step for s in run.steps]
    depth = [s.streams[0].effective_depth for s in run.steps]
    assert all(d is not None for d in depth)
    d = [float(v) for v in depth if v is not None]
    win0, win1 = first.streams[0].window, last.streams[0].window
    r_res = [ratio(watch_norms(run, k)) for k in ks]
    r_plain = [ratio(plain["steps"][k]["grad_norm"]) for k in ks]
    moves = changes(run)
    agree = check(run, resnet)
    where = "/".join(str(s) for s in steps)
    lines = [
        "# Watching a deep residual network train",
        "",
        "A 24-block residual network (`resprobe.examples.DeepDigitsNet`) and its plain twin (the same "
        "blocks without skips) trained on scikit-learn's 8×8 digits: 1437 training images, 360 held out. "
        f"Both start from the same weights and see the same batches in the same order: AdamW (lr 3e-3), "
        f"a cosine schedule over {resnet['epochs']} epochs, batches of {resnet['batch']}: "
        f"{resnet['steps_total']} steps. The residual network was watched with "
        f"`resprobe.watch(model, every={run.header.every}, iterative=True)`: {n} measured steps, "
        f"{first.step} to {last.step}, each on that step's own forward and backward pass. "
        "Every number on this page is written by `python scripts/watch_evidence.py` from what it measured.",
        "",
        f"The run report: [run-report.md]({RESNET}/run-report.md) "
        f"([standalone HTML]({RESNET}/{HTML})), made from the record "
        f"`{RESNET}/resprobe-run.jsonl`.",
        "",
        "## At a glance",
        "",
        *_table(["", "residual", "plain"], [
            ["held-out accuracy after training", _f(resnet["accuracy"]), _f(plain["accuracy"])],
            ["training loss, last epoch", _f(resnet["curve"][-1]["train_loss"], 4),
             _f(plain["curve"][-1]["train_loss"], 4)],
            ["effective depth, first → last measured step", f"{d[0]:.2f} → {d[-1]:.2f} of 24",
             "– (no residual joins)"],
            *([f"gradient norm, first block / last block, step {s}", _f(a), _f(b)]
              for s, a, b in zip(steps, r_res, r_plain)),
        ], "glance"),
        "## Effective depth",
        "",
        f"The mean path length of the gradient through the 24 blocks (see [effective depth]"
        f"(../effective-depth.md)) was {d[0]:.2f} at step {first.step} (90% window {list(win0 or [])}) "
        f"and {d[-1]:.2f} at step {last.step} (window {list(win1 or [])}); over the {n} measured steps it "
        f"ranged from {min(d):.2f} to {max(d):.2f}. {_depth_said(d[-1])}",
        "",
        *_table(["step", "effective depth", "90% window"],
                [[str(run.steps[k].step), _f(d[k], 2), str(list(run.steps[k].streams[0].window or []))]
                 for k in depth_rows(n)], "depth"),
        "## Branch gains",
        "",
        "The branch gain `‖Jᵀδ‖ / ‖δ‖` is how much of the gradient at a block's join reaches its input "
        "through the branch (the skip passes it on whole: gain 1 for an identity skip). The mean over "
        "each stage of 8 blocks:",
        "",
        *_table(["blocks", *(f"step {s}" for s in steps)],
                [[f"{8 * g + 1}–{8 * g + 8}",
                  *(_f(stage_mean([run.steps[k].value(b, "branch_gain") for b in BLOCKS], g)) for k in ks)]
                 for g in range(3)], "gains"),
        _largest_gain(run),
        "",
        "## Roles",
        "",
        _roles(run, ks, moves),
        "",
        *(_table(["block", "from", "to", "at step"], [[b, x, y, str(t)] for b, x, y, t in moves], "roles")
          if moves else []),
        "## Gradient norm along depth",
        "",
        "`‖∂L/∂y‖` (the per-sample norm of the gradient, averaged over the batch) at each block's join, "
        f"at steps {where}. For the residual network these are watch's `grad_norm`; the plain network "
        "has no joins, so resprobe finds no block in it to watch: a forward hook on each block's `bn2` "
        "records the gradient at its output instead, the point where the residual twin adds its skip. "
        f"The same hooks on the residual network agree with watch's numbers to {agree[0]:.1e} at most "
        "over every measured step and block: the 8 decimal places watch stores them with (relative "
        f"difference up to {agree[1]:.1e}, at the smallest norms).",
        "",
        *_table(["block", *(f"residual, step {s}" for s in steps), *(f"plain, step {s}" for s in steps)],
                [[b, *(_e(run.steps[k].value(b, "grad_norm")) for k in ks),
                  *(_e(plain["steps"][k]["grad_norm"][i]) for k in ks)] for i, b in enumerate(BLOCKS)],
                "gradients"),
        f"The gradient norm at the first block over the last one (below 1/{FACTOR:g}: vanishing towards the "
        f"input; above {FACTOR:g}: growing towards it; in between: roughly flat):",
        "",
        *(f"- step {s}: residual {a:.3f}, {trend(a)}; plain {b:.3f}, {trend(b)}."
          for s, a, b in zip(steps, r_res, r_plain)),
        *(["", "At initialisation the plain network's gradient grows towards the input, as it does in "
           "deep batch-normalised networks without skips (Yang et al. 2019, *A Mean Field Theory of Batch "
           "Normalization*); the skips keep the residual network's growth far smaller."]
          if r_plain[0] > FACTOR and r_plain[0] > 10 * r_res[0] else []),
        "",
        "## Training",
        "",
        *_table(["epoch", "residual: training loss", "residual: held-out accuracy", "plain: training loss",
                 "plain: held-out accuracy"],
                [[str(a["epoch"]), _f(a["train_loss"], 4), _f(a["accuracy"]), _f(b["train_loss"], 4),
                  _f(b["accuracy"])] for a, b in zip(resnet["curve"], plain["curve"])], "training"),
        f"Files: `{RESNET}/resprobe-run.jsonl` (the watched record), `{RESNET}/{GRADIENTS}` and "
        f"`{PLAIN}/{GRADIENTS}` (the hooked gradient norms at the measured steps, the loss and accuracy "
        "per epoch).",
        "",
    ]
    return "\n".join(lines)


def largest_gain(run: Run) -> tuple[float, str, int]:
    """The largest branch gain of the run: its value, block and step."""
    return max((v, b, s.step) for s in run.steps for b in BLOCKS
               if (v := s.value(b, "branch_gain")) is not None)


def _largest_gain(run: Run) -> str:
    v, block, step = largest_gain(run)
    return (f"The largest single value of the run: {v:.2f} ({block}, step {step}). A block's branch gain is "
            "the batch mean of a per-sample ratio, so a few samples whose gradient at the join is nearly "
            "zero can make it large: the stage means above include such values.")


def _roles(run: Run, ks: Sequence[int], moves: Sequence[tuple[str, str, str, int]]) -> str:
    counts = [labels(run, k) for k in ks]
    said = "; ".join(f"step {run.steps[k].step}: " + ", ".join(f"{c[x]} {x}" for x in c if c[x])
                     for k, c in zip(ks, counts))
    blocks = sorted({m[0] for m in moves}, key=BLOCKS.index)
    if not moves:
        return f"Labels per block ({said}). No block changed its label during the run."
    return (f"Labels per block ({said}). {len(moves)} label change(s) in {len(blocks)} of 24 blocks "
            f"({', '.join(blocks)}); the step is the first measured step where the new label held:")


# -- the run ---------------------------------------------------------------------------------------------
def main(epochs: int = EPOCHS, every: int = EVERY, seed: int = SEED, out: Path = GALLERY) -> None:
    """Train and watch both networks, then write the run report and the page into ``out``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _digits import split  # scikit-learn: only when training

    torch.set_num_threads(1)
    x, y, test, rest = split(seed)
    torch.manual_seed(seed)
    residual = DeepDigitsNet(residual=True)
    plain = DeepDigitsNet(residual=False)  # every one of its parameters is one of the residual's
    plain.load_state_dict({k: v for k, v in residual.state_dict().items() if k in plain.state_dict()})
    for name, model in ((RESNET, residual), (PLAIN, plain)):
        print(f"{name}:", flush=True)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        got = train(model, (x, y, test, rest), epochs, every, seed, folder if model is residual else None)
        (folder / GRADIENTS).write_text(json.dumps(got, indent=1) + "\n", encoding="utf-8")
        print(f"  held-out accuracy {got['accuracy']:.4f}", flush=True)
    write(out)


def load(out: Path = GALLERY) -> tuple[Run, dict[str, Any], dict[str, Any]]:
    """The watched record and the two gradients files, as written by ``main``."""
    def read(name: str) -> dict[str, Any]:
        got: dict[str, Any] = json.loads((out / name / GRADIENTS).read_text(encoding="utf-8"))
        return got

    return read_run(out / RESNET), read(RESNET), read(PLAIN)


def write(out: Path = GALLERY) -> None:
    """The run report and the page, from the files in ``out`` (no training)."""
    run, resnet, plain = load(out)
    (out / RESNET / HTML).write_text(run_html(run), encoding="utf-8")
    (out / RESNET / "run-report.md").write_text(run_markdown(run), encoding="utf-8")
    (out / PAGE).write_text(page(run, resnet, plain), encoding="utf-8")
    depth = [s.streams[0].effective_depth for s in run.steps]
    print(f"effective depth {depth[0]} -> {depth[-1]} of 24; watch vs hooks: {check(run, resnet)}")
    for k in chosen(len(run.steps)):
        res, pl = ratio(watch_norms(run, k)), ratio(plain["steps"][k]["grad_norm"])
        print(f"step {run.steps[k].step}: gradient norm first/last block: residual {res:.3f}, plain {pl:.3f}")
    print(f"held-out accuracy: residual {resnet['accuracy']:.4f}, plain {plain['accuracy']:.4f}")
    print(f"wrote {out / PAGE}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", action="store_true",
                        help="rewrite the reports and the page only (no training)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--every", type=int, default=EVERY)
    parser.add_argument("--out", type=Path, default=GALLERY, help="the folder to write into (a trial run)")
    args = parser.parse_args()
    if args.page:
        write(args.out)
    else:
        main(args.epochs, args.every, SEED, args.out)
