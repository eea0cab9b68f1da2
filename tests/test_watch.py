"""resprobe.watch: measured on the training run's own passes, the run unchanged, the numbers those
of resprobe.analyze on the same batch and weights."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import resprobe
from resprobe.examples import DeepDigitsNet
from resprobe.runlog import FILE, read_run

REFINEMENT = ("update_ratio", "variance_ratio", "cos_branch_skip", "block_influence")
SCALE_FREE = ("skip_gain", "branch_gain", "iterative_cos")


class DropBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(width)
        self.fc = nn.Linear(width, width)
        self.drop = nn.Dropout(0.3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(torch.tanh(self.fc(self.norm(x))))


class DropNet(nn.Module):
    """Residual MLP with batch norm and dropout in every block."""

    def __init__(self, width: int = 16, depth: int = 4):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.blocks = nn.Sequential(*[DropBlock(width) for _ in range(depth)])
        self.head = nn.Linear(width, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.inp(x)))  # type: ignore[no-any-return]


def _train(model: nn.Module, batches: list[tuple[Tensor, Tensor]], watch: dict[str, Any] | None,
           loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None,
           ) -> tuple[list[list[Tensor]], list[float], Any]:
    """SGD with momentum over ``batches``; the gradients and losses of every step, and the
    watch handle (closed) when watched."""
    torch.manual_seed(123)  # dropout masks come from here: the same in both runs
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    w = resprobe.watch(model, **watch) if watch is not None else None
    grads, losses = [], []
    for x, y in batches:
        opt.zero_grad()
        loss = loss_fn(model, x, y) if loss_fn else F.cross_entropy(model(x), y)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        losses.append(loss.item())
        opt.step()
        if w is not None:
            w.step()
    if w is not None:
        w.close()
    return grads, losses, w


def _batches(n: int, shape: tuple[int, ...], classes: int, size: int = 12) -> list[tuple[Tensor, Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(size, *shape, generator=g), torch.randint(0, classes, (size,), generator=g))
            for _ in range(n)]


def _same_run(a: tuple[Any, ...], b: tuple[Any, ...], ma: nn.Module, mb: nn.Module) -> None:
    for ga, gb in zip(a[0], b[0]):
        assert all(torch.equal(x, y) for x, y in zip(ga, gb))
    assert a[1] == b[1]
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("train", [True, False])
def test_gradients_losses_and_weights_are_bit_identical_to_an_unwatched_run(train: bool,
                                                                          tmp_path: Path) -> None:
    """Batch norm in train mode (running statistics) and dropout (the RNG): every step measured."""
    torch.manual_seed(0)
    watched = DropNet().train(train)
    plain = copy.deepcopy(watched)
    batches = _batches(5, (8,), 5)
    got = _train(watched, batches, {"every": 1, "log_dir": tmp_path, "iterative": True})
    _same_run(got, _train(plain, batches, None), watched, plain)
    assert [r.step for r in got[2].records] == [0, 1, 2, 3, 4]
    assert all(r.blocks["blocks.0"]["update_ratio"] is not None for r in got[2].records)


def test_a_post_activation_resnet_with_in_place_joins_trains_the_same(tmp_path: Path) -> None:
    """torchvision's in-place ``out += identity`` and batch norm: watched every other step."""
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    watched = tv.models.resnet18(num_classes=4).train()
    plain = copy.deepcopy(watched)
    batches = _batches(3, (3, 32, 32), 4, size=4)
    got = _train(watched, batches, {"every": 2, "log_dir": tmp_path})
    _same_run(got, _train(plain, batches, None), watched, plain)
    assert [r.step for r in got[2].records] == [0, 2]
    assert len(got[2].records[0].blocks) == 8


def _analyze(model: nn.Module, x: Any, y: Tensor, **inputs: Any) -> resprobe.Report:
    def per_sample(out: Any, inp: Any, targets: Any) -> Tensor:
        logits = out if isinstance(out, Tensor) else out.logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                               reduction="none").reshape(y.shape[0], -1).mean(1)
    given = resprobe.Inputs((x,) if x is not None else (), inputs)
    return resprobe.analyze(model, given, objective=per_sample, probes=("refinement", "gradients"))


def _agree(record: Any, report: resprobe.Report, n: int) -> int:
    """Every number of every block: the record's (for a mean loss over ``n`` samples) against
    the report's (a summed per-sample loss: gradients ``n`` times larger)."""
    checked = 0
    for block in report.blocks:
        if not block.is_residual:
            continue
        got = record.blocks[block.name]
        ref = {**block.metrics["refinement"], **block.metrics["gradients"]}
        for key in (*REFINEMENT, *SCALE_FREE, "grad_norm", "param_grad_norm", "param_norm"):
            want, have = ref[key], got[key]
            if key == "grad_norm":
                have = have * n
            assert (want is None) == (have is None), (block.name, key)
            if want is not None:
                assert have == pytest.approx(want, rel=1e-5, abs=1e-7 * n), (block.name, key)
                checked += 1
        assert got["label"] == ref["label"]
    return checked


def test_a_record_equals_analyze_on_the_same_batch_and_weights() -> None:
    torch.manual_seed(0)
    model = DeepDigitsNet(True, stages=(2, 2, 2)).eval()
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    w = resprobe.watch(model, every=1, tensorboard=False, iterative=True)
    F.cross_entropy(model(x), y).backward()
    record = w.step()
    w.close()
    model.zero_grad(set_to_none=True)
    assert record is not None and record.samples == 16
    assert _agree(record, _analyze(model, x, y), 16) >= 6 * 9
    depth = resprobe.analyze(model, x, probes=("gradients", "depth"),
                             objective=lambda out, inp, t: F.cross_entropy(out, y, reduction="none"))
    stream = depth.result("depth").summary["streams"][0]  # type: ignore[union-attr]
    assert record.streams[0].effective_depth == pytest.approx(stream["effective_depth"], abs=1e-6)


def test_a_transformer_with_padding_trains_the_same_and_agrees_with_analyze() -> None:
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = tf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                           attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    model = tf.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 50, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    plain = copy.deepcopy(model)

    def loss(m: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        logits = m(input_ids=x, attention_mask=mask).logits
        per_token = F.cross_entropy(logits.reshape(-1, 50), y.reshape(-1), reduction="none")
        return per_token.reshape(3, -1).mean(1).mean()

    got = _train(model, [(ids, ids)], {"every": 1, "tensorboard": False, "iterative": True}, loss)
    _same_run(got, _train(plain, [(ids, ids)], None, loss), model, plain)
    record = got[2].records[0]
    assert record.blocks["transformer.h.0.attn"]["units"] == int(mask.sum())  # padding left out
    # the same step on the weights before it: analyze on a fresh copy of the first weights
    torch.manual_seed(0)
    fresh = tf.GPT2LMHeadModel(config).eval()
    assert _agree(record, _analyze(fresh, None, ids, input_ids=ids, attention_mask=mask), 3) >= 4 * 9


def test_micro_batches_of_one_step_are_measured_as_one_step() -> None:
    """Gradient accumulation: two micro-batches then one optimizer step make one record over
    both; the forward numbers are those of one pass over the two together."""
    torch.manual_seed(0)
    model = DeepDigitsNet(True, stages=(1, 1, 1)).eval()
    x, y = torch.randn(10, 1, 8, 8), torch.randint(0, 10, (10,))
    w = resprobe.watch(model, every=1, tensorboard=False, iterative=True)
    for part in (slice(0, 4), slice(4, 10)):
        (F.cross_entropy(model(x[part]), y[part], reduction="sum") / 10).backward()
    record = w.step()
    w.close()
    model.zero_grad(set_to_none=True)
    assert record is not None and (record.samples, record.micro_batches) == (10, 2)
    _agree(record, _analyze(model, x, y), 10)


def test_steps_measured_evaluation_passes_left_alone_and_the_optimizer_hook() -> None:
    torch.manual_seed(0)
    model = DeepDigitsNet(True, stages=(1, 1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    with resprobe.watch(model, every=3, optimizer=opt, tensorboard=False) as w:
        for _ in range(7):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            with torch.no_grad():
                model(x)  # an evaluation pass inside the loop: never measured
            opt.step()  # the optimizer's step hook ends the step
    assert [r.step for r in w.records] == [0, 3, 6]
    assert all(r.micro_batches == 1 for r in w.records)
    assert w.step_number == 7


def test_the_model_is_left_as_found(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DeepDigitsNet(True, stages=(1, 1, 1)).train()
    model.layers[1].bn1.eval()  # a frozen norm stays frozen
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = [(m, {k: dict(v) for k, v in vars(m).items() if "hook" in k and isinstance(v, dict)})
             for m in model.modules()]
    forwards = [m.__dict__.get("forward") for m in model.modules()]
    flags = [m.training for m in model.modules()]
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    with resprobe.watch(model, every=1, log_dir=tmp_path) as w:
        F.cross_entropy(model(x), y).backward()
        w.step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for k, v in before.items():  # undo the training step's buffer updates, then compare all
            model.state_dict()[k].copy_(v)
    assert [m.training for m in model.modules()] == flags
    assert [m.__dict__.get("forward") for m in model.modules()] == forwards
    for m, dicts in hooks:
        assert {k: dict(v) for k, v in vars(m).items() if "hook" in k and isinstance(v, dict)} == dicts
    assert not torch.overrides._get_current_function_mode_stack()


def test_a_forward_that_fails_in_a_measured_step_leaves_nothing_behind() -> None:
    model = DeepDigitsNet(True, stages=(1, 1, 1))
    w = resprobe.watch(model, every=1, tensorboard=False)
    model(torch.randn(2, 1, 8, 8)).sum().backward()
    w.step()
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 8, 8))  # wrong channels: the stem fails mid-pass
    assert not torch.overrides._get_current_function_mode_stack()
    model(torch.randn(2, 1, 8, 8)).sum().backward()  # the next step is measured again
    assert w.step() is not None
    w.close()


def test_a_model_that_changes_path_is_captured_again() -> None:
    class Switch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            x = x + self.a(x)
            if x.shape[0] > 3:  # larger batches take one more block
                x = x + torch.tanh(self.b(x))
            return x

    model = Switch()
    w = resprobe.watch(model, every=1, tensorboard=False)
    for n in (2, 5, 5):
        model(torch.randn(n, 4)).sum().backward()
        w.step()
    w.close()
    assert [r.step for r in w.records] == [0, 2]  # step 1 left the graph: captured again for step 2
    assert [len(r.blocks) for r in w.records] == [1, 2]
    assert any("another path" in n for n in w.records[1].notes)


def test_compiled_models_are_refused_and_a_model_compiled_later_says_so() -> None:
    model = DeepDigitsNet(True, stages=(1, 1, 1))
    with pytest.raises(resprobe.UsageError, match="eager model"):
        resprobe.watch(torch.compile(model))
    w = resprobe.watch(model, every=1, tensorboard=False)
    compiled = torch.compile(model, backend="eager")
    compiled(torch.randn(2, 1, 8, 8)).sum().backward()
    w.step()
    w.close()
    assert w.records == [] and w.stopped is not None and "torch.compile" in w.stopped


def test_autocast_bfloat16_training_is_unchanged() -> None:
    torch.manual_seed(0)
    watched = DeepDigitsNet(True, stages=(1, 1, 1))
    plain = copy.deepcopy(watched)

    def loss(m: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.cross_entropy(m(x), y)

    batches = _batches(2, (1, 8, 8), 10, size=6)
    got = _train(watched, batches, {"every": 1, "tensorboard": False}, loss)
    _same_run(got, _train(plain, batches, None, loss), watched, plain)
    assert all(math.isfinite(v["update_ratio"]) for v in got[2].records[-1].blocks.values())


def test_the_log_holds_a_header_and_one_line_per_measured_step(tmp_path: Path) -> None:
    model = DeepDigitsNet(True, stages=(1, 1, 1))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with resprobe.watch(model, every=2, log_dir=tmp_path, tensorboard=False) as w:
        for _ in range(5):
            F.cross_entropy(model(x), y).backward()
            w.step()
    lines = [json.loads(line) for line in (tmp_path / FILE).read_text().splitlines()]
    assert [d["kind"] for d in lines] == ["run", "step", "step", "step"]
    run = read_run(tmp_path)
    assert [s.step for s in run.steps] == [0, 2, 4]
    assert [b.name for b in run.header.blocks] == ["layers.0", "layers.1", "layers.2"]
    assert run.steps[1].to_dict() == lines[2] and run.steps[1] == w.records[1]


def test_tensorboard_scalars_one_chart_per_metric(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = DeepDigitsNet(True, stages=(1, 1, 1))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    with resprobe.watch(model, every=1, log_dir=tmp_path) as w:
        for _ in range(2):
            F.cross_entropy(model(x), y).backward()
            w.step()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "resprobe/update_ratio/layers.1" in tags and "resprobe/effective_depth/stream0" in tags
    got = [e.value for e in events.Scalars("resprobe/branch_gain/layers.2")]
    want = [r.blocks["layers.2"]["branch_gain"] for r in w.records]
    assert got == pytest.approx(want, rel=1e-6)


def test_bad_arguments_say_what_to_pass() -> None:
    model = DeepDigitsNet(True, stages=(1, 1, 1))
    for kwargs, match in (({"every": 0}, "every"), ({"probes": ("lens",)}, "probes")):
        with pytest.raises(resprobe.UsageError, match=match):
            resprobe.watch(model, **kwargs)
    with pytest.raises(resprobe.UsageError, match="nn.Module"):
        resprobe.watch("model.pt")  # type: ignore[arg-type]


def test_two_ddp_processes_record_what_one_process_records(tmp_path: Path) -> None:
    """torchrun, two ranks on gloo, each with half of every global batch under DDP: rank 0's
    records equal one process's on the whole batches (the sums all-reduced once per step)."""
    import subprocess
    import sys

    script = str(Path(__file__).with_name("_watch_ddp.py"))
    subprocess.run([sys.executable, script, str(tmp_path / "one")], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    script, str(tmp_path / "two")], check=True, capture_output=True, timeout=300)
    one, two = read_run(tmp_path / "one"), read_run(tmp_path / "two")
    assert (one.header.world_size, two.header.world_size) == (1, 2)
    assert [s.step for s in two.steps] == [s.step for s in one.steps] == [0, 2]
    checked = 0
    for a, b in zip(one.steps, two.steps):
        assert (a.samples, b.samples, b.micro_batches) == (8, 8, 2)
        for name, numbers in a.blocks.items():
            for key, value in numbers.items():
                if isinstance(value, float):
                    assert b.blocks[name][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, key)
                    checked += 1
                else:
                    assert b.blocks[name][key] == value
        assert [s.effective_depth for s in b.streams] == pytest.approx([s.effective_depth for s in a.streams])
    assert checked >= 2 * 4 * 10


def test_a_failure_inside_the_measurement_never_stops_the_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import resprobe.watcher

    def broken(*args: Any, **kwargs: Any) -> None:
        raise resprobe.CaptureError("cannot record this model")

    monkeypatch.setattr(resprobe.watcher, "record", broken)
    torch.manual_seed(0)
    watched = DeepDigitsNet(True, stages=(1, 1, 1))
    plain = copy.deepcopy(watched)
    batches = _batches(2, (1, 8, 8), 10, size=4)
    with pytest.warns(RuntimeWarning, match="stopped measuring at step 0: CaptureError"):
        got = _train(watched, batches, {"every": 1, "tensorboard": False})
    _same_run(got, _train(plain, batches, None), watched, plain)
    assert got[2].records == [] and "cannot record" in got[2].stopped


def test_a_model_that_never_follows_its_graph_is_given_up_on() -> None:
    calls = [0]  # outside the model: a capture puts the model's own attributes back

    class Coin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            calls[0] += 1  # every pass differs from the one before
            return x + torch.tanh(self.a(x)) if calls[0] % 2 else x + self.a(x)

    model = Coin()
    w = resprobe.watch(model, every=1, tensorboard=False)
    for _ in range(8):
        model(torch.randn(3, 4)).sum().backward()
        w.step()
    w.close()
    assert w.stopped is not None and "left its captured graph 3 times" in w.stopped


@pytest.mark.parametrize("reentrant", [False, True])
def test_activation_checkpointing(reentrant: bool) -> None:
    """Non-reentrant checkpointing keeps the gates in the backward pass: every number measured;
    reentrant checkpointing re-runs the blocks without them: the record says so. Training is
    unchanged either way."""
    tf = pytest.importorskip("transformers")
    config = tf.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=16,
                           attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0)
    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(config).train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    plain = copy.deepcopy(model)
    ids = torch.randint(0, 50, (3, 10), generator=torch.Generator().manual_seed(1))

    def loss(m: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return m(input_ids=x, labels=y).loss  # type: ignore[no-any-return]

    got = _train(model, [(ids, ids)], {"every": 1, "tensorboard": False}, loss)
    _same_run(got, _train(plain, [(ids, ids)], None, loss), model, plain)
    record = got[2].records[0]
    gains = [d["branch_gain"] for d in record.blocks.values()]
    assert all(d["update_ratio"] is not None for d in record.blocks.values())
    if reentrant:
        assert gains == [None] * 4 and any("use_reentrant=False" in n for n in record.notes)
    else:
        assert None not in gains and not record.notes


def test_a_grad_scaler_with_the_optimizer_hook_is_refused_and_leaves_no_hook() -> None:
    """A step the scaler skips never reaches the optimizer's hook: with a scaler, step() is
    called by hand (after scaler.update())."""
    model = DeepDigitsNet(True, stages=(1, 1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    with pytest.raises(resprobe.UsageError, match="scaler.update"):
        resprobe.watch(model, optimizer=opt, scaler=scaler)
    assert not model._forward_pre_hooks and not model._forward_hooks and not opt._optimizer_step_post_hooks


def test_a_resumed_run_keeps_the_steps_written_before(tmp_path: Path) -> None:
    model = DeepDigitsNet(True, stages=(1, 1, 1))
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    for start in (0, 3):
        with resprobe.watch(model, every=2, log_dir=tmp_path, start=start, tensorboard=False) as w:
            for _ in range(3):
                F.cross_entropy(model(x), y).backward()
                w.step()
    kinds = [json.loads(line)["kind"] for line in (tmp_path / FILE).read_text().splitlines()]
    assert kinds == ["run", "step", "step", "run", "step"]  # steps 0, 2, then 4 after the restart at 3
    assert [s.step for s in read_run(tmp_path).steps] == [0, 2, 4]  # the resumed run continues the record
