"""The tuned lens (Belrose et al. 2023, "Eliciting Latent Predictions from Transformers with the
Tuned Lens"): the logit lens with one affine translator per block, fitted so that the model's own
tail reads the translated state as close to the final prediction as it can.

The translator of block k maps the state after the block ``h ↦ h + A_k h + b_k`` over its last
dimension (the feature dimension of sequence and vector models); ``A_k`` and ``b_k`` start at
zero, the identity, where the tuned lens is the logit lens. They are fitted on the taped passes
of the logit lens (``resprobe.lens``, the states of every batch kept on the device), the model
still held as found, to minimise the mean over units of KL(p_final ‖ softmax(tail(translator(h_k))))
(the paper's objective): a fixed number of Adam steps, each on one batch in turn, the learning
rate warming up over the first tenth and then decaying linearly to zero, weight decay 1e-3 (the
tuned-lens library's). The paper's SGD takes steps in the state's units, so a state of another
scale than a transformer's needs another rate; here the rates are relative to the state (1/d for
``A``, rms(h)/d for ``b``), one setting for any width and scale. Gradients are taken of the
translators only: the model's parameters get none and never change. Nothing is random, so a fit
is the same every run. A translator that reads the fitting data worse than the identity did
not converge and is put back to the identity (a note says so).

Per block it adds ``tuned_kl_to_final`` and ``tuned_top1_agreement`` to the lens's numbers. The
last block's state is the final state: its translator is the identity (nothing to fit). States
whose features are not in the last dimension (a CNN's ``[N, C, H, W]``) are not translated.

Translators can be saved to a file (``torch.save`` of a plain dict of tensors, block names and
a hash of the model's parameters; read back with ``weights_only=True``) and read again instead of fitting
when they match the model's weights, its translated blocks and their widths.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .blocks import Block
from .data import Data
from .graph import Graph
from .lens import Sums, Taped, compare, lens
from .objective import ObjectiveSpec
from .session import Session, Steps

__all__ = ["DEFAULT_STEPS", "FORMAT", "Translators", "tuned_lens"]

DEFAULT_STEPS = 200
FORMAT = "resprobe.tuned_lens/1"  # the translators file's format, checked on reading
_LR = 1.0  # Adam's step, relative to the state (see _groups)
_WEIGHT_DECAY = 1e-3  # the tuned-lens library's


@dataclass
class Translators:
    """One affine translator per block name: ``weights[name]`` (``A``, d x d) and ``biases[name]``
    (``b``, d); the translated state is ``h + h Aᵀ + b``. ``model``: the fingerprint of the weights
    they were fitted for."""

    weights: dict[str, Tensor] = field(default_factory=dict)
    biases: dict[str, Tensor] = field(default_factory=dict)
    model: str = ""
    steps: int = 0

    def __call__(self, name: str, state: Tensor) -> Tensor:
        a, b = self.weights[name], self.biases[name]
        h = state.to(a.dtype)
        return (h + h @ a.T + b).to(state.dtype)

    def to_dict(self) -> dict[str, Any]:
        """What the translators file holds: plain tensors, strings and numbers."""
        names = sorted(self.weights)
        return {"format": FORMAT, "model": self.model, "steps": self.steps, "blocks": names,
                "weights": {n: self.weights[n].detach().cpu().contiguous() for n in names},
                "biases": {n: self.biases[n].detach().cpu().contiguous() for n in names}}

    def save(self, path: str) -> None:
        """Write the translators to ``path`` (whole or not at all: a temporary file, then renamed)."""
        target = Path(path)
        if target.parent != Path():
            target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            torch.save(self.to_dict(), tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def read(path: str, widths: dict[str, int], model: str, device: torch.device) -> Translators | str:
        """The translators in ``path`` when they are for these weights (``model``) and exactly the
        blocks of ``widths`` (name: width of its state), else why not."""
        try:
            got = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # not a file torch.save wrote, or one with more than plain data
            return f"not a translators file ({type(err).__name__})"
        if not isinstance(got, dict) or got.get("format") != FORMAT:
            return f"not a translators file of format {FORMAT}"
        if got.get("model") != model:
            return "fitted for other weights"
        if sorted(got.get("blocks", ())) != sorted(widths):
            return "fitted for other blocks"
        weights, biases = got.get("weights", {}), got.get("biases", {})
        for name, d in widths.items():
            a, b = weights.get(name), biases.get(name)
            if not (isinstance(a, Tensor) and isinstance(b, Tensor) and tuple(a.shape) == (d, d)
                    and tuple(b.shape) == (d,) and a.is_floating_point() and b.is_floating_point()):
                return f"block {name}: not a translator of width {d}"
        return Translators({n: weights[n].float().to(device) for n in widths},
                           {n: biases[n].float().to(device) for n in widths}, model, int(got.get("steps", 0)))


def _fingerprint(session: Session) -> str:
    """A hash of the held model's parameters (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for name, t in session.tree.params.items():
        if t.is_meta:
            continue
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}\n".encode())
        flat = t.detach().contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).cpu().numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()[:32]


class _Fit:
    """The ``then`` of the logit lens: reads or fits the translators on the taped passes (the
    model held), then measures the translated predictions. Its results: ``numbers`` (per block),
    ``summary`` and ``notes``."""

    def __init__(self, steps: int, path: str | None, progress: Callable[[int, int], None] | None):
        self.steps, self.path, self.progress = steps, path, progress
        self.numbers: dict[str, dict[str, Any]] = {}
        self.untuned: dict[str, str] = {}  # block: why it has no translator
        self.notes: list[str] = []
        self.summary: dict[str, Any] = {"steps": 0, "fitted": False, "loaded": False, "translators": path,
                                        "blocks": 0}

    def __call__(self, session: Session, taped: list[Taped]) -> None:
        widths, last = self._blocks(taped)
        translators: Translators | None = None
        model = _fingerprint(session) if self.path else ""
        if self.path and widths and Path(self.path).is_file():
            got = Translators.read(self.path, widths, model, taped[0].final.device)
            if isinstance(got, Translators):
                translators = got
                self.summary.update(loaded=True, steps=got.steps)
            else:
                self.notes.append(f"lens: the translators in {self.path} do not fit this model ({got}); "
                                  "fitted again and written over it")
        fitted = translators is None
        if translators is None:
            translators = self._fit(widths, taped)
            translators.model = model
            self.summary.update(fitted=bool(widths), steps=translators.steps if widths else 0)
        self.summary["blocks"] = len(widths)
        self._measure(translators, widths, last, taped)
        if fitted and self.path and widths:
            translators.save(self.path)

    def _blocks(self, taped: list[Taped]) -> tuple[dict[str, int], set[str]]:
        """The blocks to translate (name: width of the state), and the last blocks of their
        streams (their state is the final state: the identity is their translator)."""
        widths: dict[str, int] = {}
        last: set[str] = set()
        seen: set[int] = set()
        for t in taped:
            if t.tail.stream in seen:
                continue
            seen.add(t.tail.stream)
            end = t.tape.states[t.tail.end]
            for b in t.tail.blocks:
                state = t.tape.states.get(b.join)
                if b.name in t.tail.skipped or state is None or state.shape != end.shape:
                    continue
                if state.dim() > 3:
                    self.untuned[b.name] = (f"its state {list(state.shape[1:])} (per sample) is a feature "
                                            "map ([C, H, W]: features first); the tuned lens translates the "
                                            "last dimension (sequence and vector models)")
                elif b.join == t.tail.end:
                    last.add(b.name)
                else:
                    widths[b.name] = int(state.shape[-1])
        return widths, last

    def _fit(self, widths: dict[str, int], taped: list[Taped]) -> Translators:
        """Zero-initialised translators (the identity), fitted for ``self.steps`` steps, step s on
        batch s modulo the batches (every stream's blocks at once: their losses are independent)."""
        device = taped[0].final.device
        out = Translators({n: torch.zeros(d, d, device=device) for n, d in widths.items()},
                          {n: torch.zeros(d, device=device) for n, d in widths.items()}, steps=self.steps)
        if not widths:
            return out
        params = [*out.weights.values(), *out.biases.values()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(_groups(out, widths, taped), weight_decay=_WEIGHT_DECAY)
        warm = max(1, self.steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 1 - s / self.steps))
        batches = _by_batch(taped)
        steps = Steps(self.progress, self.steps)
        with torch.enable_grad():
            for s in range(self.steps):
                loss = torch.zeros((), device=device)
                for t in batches[s % len(batches)]:
                    logp = torch.log_softmax(t.final.detach().float(), -1)
                    total = t.weights.sum().clamp_min(1.0)
                    for b in t.tail.blocks:
                        if b.name in widths and b.join in t.tape.states:
                            logq = torch.log_softmax(self._read(t, b, out).float(), -1)
                            kl = (logp.exp() * (logp - logq)).sum(-1)
                            loss = loss + (kl * t.weights).sum() / total
                grads = torch.autograd.grad(loss, params)  # the translators' only: the model gets none
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()
                schedule.step()
                steps()
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        return out

    @staticmethod
    def _read(t: Taped, b: Block, translators: Translators | None) -> Tensor:
        """The tail's prediction on block ``b``'s state, translated (None: as it is)."""
        state = t.tape.states[b.join]
        return t.tape.replay(translators(b.name, state) if translators else state.clone(), t.final)

    def _measure(self, translators: Translators, widths: dict[str, int], last: set[str],
                 taped: list[Taped]) -> None:
        """The tuned numbers of every block; a translator just fitted that reads the fitting data
        worse than the identity (the logit lens) did not converge, and becomes the identity."""
        tuned: dict[int, Sums] = {}  # per stream, as the logit lens
        logit: dict[int, Sums] = {}
        stream: dict[str, int] = {}
        with torch.no_grad():
            for t in taped:
                sums = tuned.setdefault(t.tail.stream, Sums())
                plain = logit.setdefault(t.tail.stream, Sums())
                sums.units += float(t.weights.sum())
                for b in t.tail.blocks:
                    if b.name in widths and b.join in t.tape.states:
                        stream[b.name] = t.tail.stream
                        compare(sums, b.name, self._read(t, b, translators), t.final, t.weights)
                        if self.summary["fitted"]:
                            compare(plain, b.name, self._read(t, b, None), t.final, t.weights)
        worse = [n for n, k in stream.items() if self.summary["fitted"] and tuned[k].kl[n] > logit[k].kl[n]]
        for name in worse:
            translators.weights[name].zero_()
            translators.biases[name].zero_()
            k = stream[name]
            tuned[k].kl[name], tuned[k].agree[name] = logit[k].kl[name], logit[k].agree[name]
        if worse:
            self.notes.append(f"lens: fitting did not improve on the logit lens for {len(worse)} block(s) "
                              f"({', '.join(worse[:3])}{' …' if len(worse) > 3 else ''}); their translators "
                              "are the identity")
        for name, k in stream.items():
            units = max(tuned[k].units, 1.0)
            self.numbers[name] = {"tuned_kl_to_final": tuned[k].kl[name] / units,
                                  "tuned_top1_agreement": tuned[k].agree[name] / units}
        for name in last:
            self.numbers[name] = {"tuned_kl_to_final": 0.0, "tuned_top1_agreement": 1.0}
        for name in self.untuned:
            self.numbers[name] = {"tuned_kl_to_final": None, "tuned_top1_agreement": None}
        reasons: dict[str, list[str]] = {}
        for name, why in self.untuned.items():
            reasons.setdefault(why, []).append(name)
        self.notes += [f"lens: {len(names)} block(s) not tuned ({', '.join(names[:3])}"
                       f"{' …' if len(names) > 3 else ''}): {why}" for why, names in reasons.items()]


def _groups(translators: Translators, widths: dict[str, int], taped: list[Taped]) -> list[dict[str, Any]]:
    """Adam's parameter groups, one learning rate each that makes a step the same relative change
    of the state at any width and scale: 1/d for ``A`` (d x d), rms(h)/d for ``b`` (rms over the
    first batch's state)."""
    rms: dict[str, float] = {}
    for t in taped:
        for b in t.tail.blocks:
            if b.name in widths and b.name not in rms and b.join in t.tape.states:
                rms[b.name] = float(t.tape.states[b.join].float().pow(2).mean().sqrt())
    return [group for n, d in widths.items() for group in (
        {"params": [translators.weights[n]], "lr": _LR / d},
        {"params": [translators.biases[n]], "lr": _LR * rms[n] / d})]


def _by_batch(taped: list[Taped]) -> list[list[Taped]]:
    """The taped passes grouped by batch (one per stream each, in the order they were taped)."""
    groups: list[list[Taped]] = []
    for t in taped:
        if not groups or any(u.tail.stream == t.tail.stream for u in groups[-1]):
            groups.append([])
        groups[-1].append(t)
    return groups


def tuned_lens(model: nn.Module, graph: Graph, blocks: list[Block], data: Data, *,
               objective: ObjectiveSpec = None, train: bool = False, steps: int = DEFAULT_STEPS,
               translators: str | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """The logit lens (``resprobe.lens.lens``) and the tuned lens over ``data``: every decoded
    block's numbers get ``tuned_kl_to_final`` and ``tuned_top1_agreement`` (None for a block
    whose state is not translated). The translators are fitted on ``data`` for ``steps`` steps
    (the numbers are then in-sample), or read from the file ``translators`` when it holds
    translators for this model and its blocks; fitted ones are written there. Besides the
    logit lens's keys: ``tuned`` (``steps``, ``fitted``, ``loaded``, ``translators``: the file,
    ``blocks``: how many were translated) and ``notes``."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    fit = _Fit(steps, translators, progress)
    out = lens(model, graph, blocks, data, objective=objective, train=train, progress=progress, then=fit)
    for name, numbers in fit.numbers.items():
        entry = out["blocks"].get(name)
        if entry is not None and "not_measured" not in entry:  # the tuned numbers after the logit lens's
            out["blocks"][name] = {**{k: v for k, v in entry.items() if k != "units"}, **numbers,
                                   "units": entry["units"]}
    out["tuned"] = fit.summary
    out["notes"] = fit.notes
    return out
