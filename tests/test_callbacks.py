"""The Lightning and Hugging Face Trainer callbacks: short real training runs on the CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import resprobe
from resprobe.examples import DeepDigitsNet


def _hooks(model: nn.Module) -> dict[str, tuple[list[int], list[int]]]:
    return {name: (list(m._forward_hooks), list(m._forward_pre_hooks)) for name, m in model.named_modules()}


def _steps(log_dir: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (log_dir / "resprobe-run.jsonl").read_text().splitlines()]
    assert lines[0]["kind"] == "run"
    return lines[1:]


# -- Lightning ---------------------------------------------------------------------------------------
def _fit(tmp_path: Path, callback: Any, *, accumulate: int = 1, via_submodule: bool = False) -> Any:
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import CSVLogger

    class Digits(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = DeepDigitsNet(True, width=8, stages=(1, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)  # type: ignore[no-any-return]

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x) if via_submodule else self(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(48, 1, 8, 8), torch.randint(0, 10, (48,)))
    module = Digits()
    before = _hooks(module)
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path),
                         default_root_dir=tmp_path, accumulate_grad_batches=accumulate, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    assert _hooks(module) == before  # every hook removed
    return trainer


def test_lightning_callback_measures_every_nth_step_and_logs_through_the_loggers(tmp_path: Path) -> None:
    from resprobe_lightning import ResprobeCallback

    callback = ResprobeCallback(every=2)
    trainer = _fit(tmp_path, callback)
    log_dir = Path(trainer.log_dir) / "resprobe"
    steps = _steps(log_dir)
    assert callback.watch is not None
    assert [s["step"] for s in steps] == [0, 2, 4] == [r.step for r in callback.watch.records]
    assert all(s["micro_batches"] == 1 and s["samples"] == 8 for s in steps)
    assert resprobe.read_run(log_dir).header.model == "Digits"
    with open(Path(trainer.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    ours = [k for k in rows[0] if k.startswith("resprobe/")]
    assert {"resprobe/update_ratio/net.layers.0", "resprobe/grad_weight_ratio/net.layers.2",
            "resprobe/effective_depth/stream0"} <= set(ours)
    assert [int(r["step"]) for r in rows if r["resprobe/update_ratio/net.layers.0"]] == [0, 2, 4]


def test_lightning_callback_counts_optimizer_steps_under_gradient_accumulation(tmp_path: Path) -> None:
    from resprobe_lightning import ResprobeCallback

    callback = ResprobeCallback(every=2, log_dir=tmp_path / "run")
    _fit(tmp_path, callback, accumulate=2)
    steps = _steps(tmp_path / "run")
    assert [s["step"] for s in steps] == [0, 2, 4]
    assert all(s["micro_batches"] == 2 and s["samples"] == 16 for s in steps)


def test_lightning_callback_watches_a_submodule_and_warns_when_nothing_ran(tmp_path: Path) -> None:
    from resprobe_lightning import ResprobeCallback

    with pytest.warns(UserWarning, match=r"measured nothing at step 0.*module='model'"):
        _fit(tmp_path / "a", ResprobeCallback(every=2), via_submodule=True)
    callback = ResprobeCallback(every=3, log_dir=tmp_path / "run", module="net")
    _fit(tmp_path / "b", callback, via_submodule=True)
    assert [s["step"] for s in _steps(tmp_path / "run")] == [0, 3]
    assert callback.watch is not None and callback.watch.header is not None
    assert callback.watch.header.model == "DeepDigitsNet"
    with pytest.raises(resprobe.UsageError, match="sets start itself"):
        ResprobeCallback(start=3)


# -- Hugging Face Trainer ------------------------------------------------------------------------------
def _train(tmp_path: Path, callbacks: list[Any], *, accumulate: int = 1, attach: Any = None) -> Any:
    transformers = pytest.importorskip("transformers")

    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, 64, (32, 16))
    dataset = [{"input_ids": row, "labels": row} for row in ids]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, logging_steps=1,
        gradient_accumulation_steps=accumulate, report_to="none", use_cpu=True, save_strategy="no",
        disable_tqdm=True, dataloader_pin_memory=False)
    trainer = transformers.Trainer(model, args, train_dataset=dataset, callbacks=callbacks)
    if attach is not None:
        attach.attach(trainer)
    before = _hooks(model)
    trainer.train()
    assert _hooks(model) == before  # every hook removed
    return trainer


def test_hf_callback_measures_every_nth_step_and_adds_scalars_to_the_logs(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from resprobe_hf import ResprobeTrainerCallback

    seen: list[dict[str, float]] = []

    class Spy(transformers.TrainerCallback):  # type: ignore[misc, name-defined]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            seen.append(dict(logs))

    callback = ResprobeTrainerCallback(every=2)
    trainer = _train(tmp_path, [Spy(), callback], attach=callback)  # the spy sees what an integration would
    assert trainer.callback_handler.callbacks[0] is callback
    steps = _steps(tmp_path / "resprobe")
    assert callback.watch is not None
    assert [s["step"] for s in steps] == [0, 2] == [r.step for r in callback.watch.records]
    assert all(s["micro_batches"] == 1 and s["samples"] == 4 for s in steps)
    layer = "resprobe/update_ratio/transformer.h.0"
    logged = [h["step"] for h in trainer.state.log_history if layer in h]
    assert logged == [1, 3]  # the Trainer numbers steps from 1
    history = [h[layer] for h in trainer.state.log_history if layer in h]
    assert [d[layer] for d in seen if layer in d] == history
    first = trainer.state.log_history[0]
    assert "resprobe/effective_depth/stream0" in first
    assert "resprobe/grad_weight_ratio/transformer.h.0" in first  # counted before the gradients were zeroed


def test_hf_callback_counts_optimizer_steps_under_gradient_accumulation(tmp_path: Path) -> None:
    from resprobe_hf import ResprobeTrainerCallback

    callback = ResprobeTrainerCallback(every=3, log_dir=tmp_path / "run")
    _train(tmp_path, [callback], accumulate=2)
    steps = _steps(tmp_path / "run")
    assert [s["step"] for s in steps] == [0, 3]
    assert all(s["micro_batches"] == 2 and s["samples"] == 8 for s in steps)


def test_importing_the_hf_plugin_does_not_import_transformers() -> None:
    import subprocess
    import sys

    code = "import sys, resprobe_hf; assert 'transformers' not in sys.modules; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
