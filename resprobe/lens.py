"""The readout lens: decode the residual stream after every block with the model's own tail.

The tail of a stream is everything the recorded graph computes from the stream's final state
(the last block's join) to the model's output: final norm and unembedding for a language model,
final norm, class-token pooling and head for a ViT, pooling and classifier for a CNN. One pass
of the model tapes those ops (the recorder's rewrite table hands over each call); replaying the
tape on the state after block k gives block k's prediction, about one tail per block instead of
one forward pass (nostalgebraist 2020, the logit lens; Belrose et al. 2023, the tuned lens).

Per block: ``kl_to_final`` (the mean over units of KL(p_final ‖ p_block), nats), ``top1_agreement``
(the share of units whose top-1 equals the final top-1), ``entropy`` (of p_block, nats) and
``loss`` (the objective's loss on the block's prediction, when the objective reads targets).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import _distributed
from ._recorder import Recorder, Rewrite
from .blocks import Block, by_stream, find_blocks
from .capture import forward
from .data import Data
from .graph import Graph
from .inputs import Inputs
from .objective import Objective, ObjectiveSpec, choose_objective, main_output
from .session import Session, Steps

__all__ = ["DISTRIBUTIONS", "Sums", "Tail", "Taped", "compare", "lens", "tails"]

# objectives that read the output as logits over its last dimension (a prediction to decode)
DISTRIBUTIONS = ("self-ce", "next-token", "task")
_WITH_TARGETS = ("next-token", "task")  # ... and those whose loss is against real targets


@dataclass(frozen=True)
class Tail:
    """What a stream's lens needs from the graph: the stream's blocks, the node whose output is
    the final state (``end``), the nodes to tape from there to the outputs (``ops``, in order),
    the stream's input state (``start``: the first block's fork, None when it is a model input)
    and, per block it cannot take, why."""

    stream: int
    blocks: tuple[Block, ...]
    end: int
    ops: tuple[int, ...]
    start: int | None
    skipped: dict[str, str] = field(default_factory=dict)
    why: str | None = None  # the whole stream has no lens, and why


def _ancestors(graph: Graph, roots: tuple[int, ...]) -> set[int]:
    seen, todo = set(roots), list(roots)
    while todo:
        for i in graph[todo.pop()].inputs:
            if i not in seen:
                seen.add(i)
                todo.append(i)
    return seen


def _descendants(graph: Graph, root: int) -> set[int]:
    users: dict[int, list[int]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            users.setdefault(i, []).append(n.id)
    seen, todo = {root}, [root]
    while todo:
        for j in users.get(todo.pop(), ()):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    return seen


def tails(graph: Graph, blocks: list[Block]) -> list[Tail]:
    """For each residual stream, the tail from its final state to the outputs, or why it has none:
    a state that reaches the outputs through another stream's blocks (an encoder read by a
    decoder) is not decoded by the model's own head."""
    joins = {b.join: b for b in blocks}
    to_output = _ancestors(graph, graph.outputs)
    out = []
    for sid, chain in by_stream(blocks).items():
        last = chain[-1]
        after = (_descendants(graph, last.join) & to_output) - {last.join}
        through = sorted({joins[i].name for i in after if i in joins})
        first = graph[chain[0].fork]
        start = None if first.is_input else first.id
        if not after:
            why = "the stream's final state is not read on the way to the output"
        elif through:
            why = (f"the stream's final state reaches the output through other blocks "
                   f"({', '.join(through[:3])}{' …' if len(through) > 3 else ''}), not through a head")
        else:
            why = None
        shape = graph[last.join].shape
        skipped = {b.name: f"its state {list((graph[b.join].shape or ())[1:])} has another shape than the "
                           f"tail takes {list((shape or ())[1:])} (per sample)"
                   for b in chain if graph[b.join].shape != shape}
        out.append(Tail(sid, tuple(chain), last.join, tuple(sorted(after)), start, skipped, why))
    return out


@dataclass(frozen=True)
class Taped:
    """One batch's taped pass over one stream, kept for a lens fitted afterwards (the tuned lens,
    ``resprobe.tuned_lens``): the tape (the states after the stream's blocks, and the tail to
    replay on them), the output the objective reads (``final``) and one weight per unit."""

    tail: Tail
    tape: _Tape
    final: Tensor
    weights: Tensor


class _Tape:
    """The rewrites of one taped pass: the states after the stream's joins (and before its first
    block), and every call of the tail with its arguments and outputs."""

    def __init__(self, graph: Graph, tail: Tail):
        self.graph, self.tail = graph, tail
        self.states: dict[int, Tensor] = {}
        self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any], list[Tensor]]] = []
        self.end: Tensor | None = None

    def rewrites(self, _: Recorder) -> dict[int, Rewrite]:
        table: dict[int, Rewrite] = {}
        keep = {b.join for b in self.tail.blocks}
        if self.tail.start is not None:
            keep.add(self.tail.start)
        for nid in keep:
            table[self._call(nid)] = self._state(nid)
        for nid in self.tail.ops:
            call = self._call(nid)
            if call not in table and call not in {self._call(i) for i in keep}:
                table[call] = self._taped()
        return table

    def _call(self, nid: int) -> int:
        """The node id the recorder gives the call that made node ``nid`` (its first output)."""
        return nid - (self.graph[nid].output_index or 0)

    def _state(self, nid: int) -> Rewrite:
        index = self.graph[nid].output_index or 0
        is_end = nid == self.tail.end

        def rewrite(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            def call(*a: Any, **k: Any) -> Any:
                out = func(*a, **k)
                made = [out] if isinstance(out, Tensor) else _tensors(out)
                # an op that writes into its first argument and returns nothing (``x[i] = y``)
                got = made[index] if index < len(made) else a[0] if a and isinstance(a[0], Tensor) else None
                if got is None:
                    return out
                self.states[nid] = got.detach().clone()  # later in-place ops must not change it
                if is_end:
                    self.end = got
                return out
            return call, args, kwargs
        return rewrite

    def _taped(self) -> Rewrite:
        def rewrite(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            def call(*a: Any, **k: Any) -> Any:
                out = func(*a, **k)
                self.calls.append((func, a, dict(k), [out] if isinstance(out, Tensor) else _tensors(out)))
                return out
            return call, args, kwargs
        return rewrite

    def makes(self, want: Tensor) -> bool:
        """Whether the taped tail makes ``want`` (or ``want`` is the final state itself)."""
        return want is self.end or any(o is want for _, _, _, outs in self.calls for o in outs)

    def replay(self, state: Tensor, want: Tensor) -> Tensor:
        """The tail run again on ``state`` in place of the final state; returns what it makes
        where the taped pass made ``want`` (the output the objective reads)."""
        assert self.end is not None
        env: dict[int, Tensor] = {id(self.end): state}

        def swap(v: Any) -> Any:
            if isinstance(v, Tensor):
                return env.get(id(v), v)
            if type(v) is list or type(v) is tuple:
                return type(v)(swap(x) for x in v)
            return v

        if id(want) in env:
            return env[id(want)]
        for func, args, kwargs, outs in self.calls:
            new = func(*swap(args), **{k: swap(v) for k, v in kwargs.items()})
            for old, made in zip(outs, [new] if isinstance(new, Tensor) else _tensors(new)):
                env[id(old)] = made
            if id(want) in env:
                return env[id(want)]
        raise RuntimeError("the taped tail does not make the model's output")


def _tensors(value: Any) -> list[Tensor]:
    from ._recorder import gather_tensors

    return gather_tensors(value if isinstance(value, (list, tuple)) else [value], [])


class Sums:
    """Running sums per block (and for the stream's input state, key ``""``) over units."""

    def __init__(self) -> None:
        self.kl: dict[str, float] = {}
        self.agree: dict[str, float] = {}
        self.entropy: dict[str, float] = {}
        self.logp: dict[str, float] = {}
        self.loss: dict[str, float] = {}
        self.units = 0.0
        self.samples = 0
        self.readout: dict[str, Any] | None = None  # top-1 tokens of the first sample, a few positions

    def add(self, name: str, key: str, value: float) -> None:
        table: dict[str, float] = getattr(self, key)
        table[name] = table.get(name, 0.0) + value


def _units(logits: Tensor, inp: Inputs) -> Tensor:
    """One weight per unit (every position but the class dimension): the attention mask where
    it matches the positions, else ones."""
    shape = logits.shape[:-1]
    mask = inp.kwargs.get("attention_mask")
    if isinstance(mask, Tensor) and tuple(mask.shape) == tuple(shape):
        from ._stats import token_mask

        return token_mask(mask).to(logits.device)
    return torch.ones(shape, device=logits.device)


class _Final:
    """The final prediction of one batch, computed once for every block compared with it."""

    def __init__(self, final: Tensor):
        self.logp = torch.log_softmax(final.float(), dim=-1)
        self.p = self.logp.exp()
        self.plogp = (self.p * self.logp).sum(-1)  # −H(p_final), so KL = plogp − Σ p log q
        self.top = final.argmax(-1)


def compare(sums: Sums, name: str, lens_logits: Tensor, final: _Final | Tensor, weights: Tensor) -> None:
    """Add one block's KL to the final prediction, top-1 agreement, entropy and the log-probability
    of the final top-1, over the weighted units."""
    if isinstance(final, Tensor):
        final = _Final(final)
    logq = torch.log_softmax(lens_logits.float(), dim=-1)
    kl = final.plogp - (final.p * logq).sum(-1)
    agree = (lens_logits.argmax(-1) == final.top).float()
    entropy = -(logq.exp() * logq).sum(-1)
    chosen = logq.gather(-1, final.top.unsqueeze(-1)).squeeze(-1)
    for key, v in (("kl", kl), ("agree", agree), ("entropy", entropy), ("logp", chosen)):
        sums.add(name, key, float((v * weights).sum()))


def lens(model: nn.Module, graph: Graph, blocks: list[Block], data: Data, *,
         objective: ObjectiveSpec = None, train: bool = False,
         progress: Callable[[int, int], None] | None = None,
         then: Callable[[Session, list[Taped]], None] | None = None) -> dict[str, Any]:
    """The logit lens of every residual stream that the model's own tail can decode, over
    ``data``: per block the numbers of this module's docstring, per stream where agreement with
    the final prediction first reaches 90% and each block's share of the final top-1's
    log-probability gained. Blocks and streams without a lens say why (``not_measured``).

    ``then(session, taped)``, when given, is called once after the last batch, with the model
    still held and autograd off, with every batch's taped pass of every decoded stream (kept
    for it: the tuned lens fits its translators on them); not called when nothing is decoded."""
    found = tails(graph, blocks)
    out: dict[str, Any] = {"blocks": {}, "streams": [], "objective": None, "samples": 0}
    for t in found:
        for b in t.blocks:
            why = t.why or t.skipped.get(b.name)
            if why:
                out["blocks"][b.name] = {"not_measured": why}
    run = _Run(graph, [t for t in found if t.why is None], objective, then is not None)
    if not run.usable:
        out["streams"] = [{"id": t.stream, "not_measured": t.why} for t in found]
        return out
    try:
        batches = data.batches if then is not None else _distributed.share_size(data.batches)
        run.over(Session(model, train=train), data, Steps(progress, batches * len(run.usable)), then)
    except _NotADistribution as err:
        why = (f"the objective ({err}) does not read the output as a prediction over classes or tokens; "
               "a lens decodes logits (objectives: " + ", ".join(DISTRIBUTIONS) + ")")
        return {"blocks": {b.name: {"not_measured": why} for t in found for b in t.blocks},
                "streams": [{"id": t.stream, "not_measured": why} for t in found],
                "objective": {"name": str(err), "description": ""}, "samples": 0}
    return _gathered(out, found, run)


class _Run:
    """The passes of one lens: the streams still decoded, their sums, the objective once chosen,
    the graph the passes follow, and why a stream was given up."""

    def __init__(self, graph: Graph, usable: list[Tail], objective: ObjectiveSpec, keep: bool):
        self.usable, self.objective = usable, objective
        self.sums = {t.stream: Sums() for t in usable}
        self.chosen: Objective | None = None
        self.current = _Current(graph, {t.stream: t for t in usable})
        self.unreached: dict[int, str] = {}
        self.kept: list[Taped] | None = [] if keep else None

    def over(self, session: Session, data: Data, steps: Steps,
             then: Callable[[Session, list[Taped]], None] | None) -> None:
        # torch.distributed: each process decodes its share of the batches, the sums are added up
        # (a tuned lens is fitted on every batch, in every process)
        shared = then is None
        with session, torch.no_grad():
            for inp, targets in _distributed.share(data, data.batches) if shared else data:
                inp, targets = session.on(inp, targets)
                for t in list(self.usable):
                    self.one(session, t, inp, targets)
                    steps()
            if then is not None and self.kept is not None:
                then(session, self.kept)
        if shared:
            self.added_up()

    def added_up(self) -> None:
        """Every process's sums added up (nothing changes in one process)."""
        tables = ("kl", "agree", "entropy", "logp", "loss")
        named: dict[Any, float] = {(sid, key, name): v for sid, s in self.sums.items() for key in tables
                                   for name, v in getattr(s, key).items()}
        for sid, s in self.sums.items():
            named[(sid, "units")], named[(sid, "samples")] = s.units, s.samples
        got = _distributed.add_up_named(named, "the processes decoded different blocks (the model took other "
                                               "paths on their batches); run the lens in one process")
        for (sid, key, *name), v in got.items():
            if name:
                getattr(self.sums[sid], key)[name[0]] = v
            else:
                setattr(self.sums[sid], key, round(v) if key == "samples" else v)

    def one(self, session: Session, t: Tail, inp: Inputs, targets: Any) -> None:
        """One batch of one stream."""
        def attempt() -> Objective:
            return _batch(session, self.current, t.stream, inp, targets, self.objective, self.chosen,
                          self.sums[t.stream], self.kept)
        try:
            self.chosen = attempt()
        except _OffGraph:  # other inputs (an attention mask): capture again, match blocks by name
            self.current = _Current.of(session.recapture(inp, grad=False), self.usable)
            self.chosen = attempt()
        except _Unreached:  # another output (a CLIP text tower): not what the objective reads
            self.usable.remove(t)
            self.unreached[t.stream] = ("the stream's final state does not reach the output the objective "
                                        "reads")


def _gathered(out: dict[str, Any], found: list[Tail], run: _Run) -> dict[str, Any]:
    """``out`` with every decoded stream's numbers, and why the others were not decoded."""
    for t in found:
        if t.stream in run.unreached:
            out["blocks"].update({b.name: {"not_measured": run.unreached[t.stream]} for b in t.blocks})
            out["streams"].append({"id": t.stream, "not_measured": run.unreached[t.stream]})
    if run.chosen is None:
        return out
    out["objective"] = {"name": run.chosen.name, "description": run.chosen.description}
    for t in run.usable:
        block_numbers, stream = _finish(t, run.sums[t.stream], run.chosen)
        out["blocks"].update(block_numbers)
        out["streams"].append(stream)
        out["samples"] = max(out["samples"], run.sums[t.stream].samples)
    out["streams"] += [{"id": t.stream, "not_measured": t.why} for t in found if t.why is not None]
    out["streams"].sort(key=lambda s: s["id"])
    return out


def _batch(session: Session, current: _Current, stream: int, inp: Inputs, targets: Any, spec: ObjectiveSpec,
           chosen: Objective | None, sums: Sums, kept: list[Taped] | None = None) -> Objective:
    """One taped pass on a batch, then one tail per block of ``stream``; returns the objective
    (chosen on the first batch). The taped pass goes into ``kept`` when given."""
    graph, tail = current.graph, current.tails[stream]
    tape = _Tape(graph, tail)
    output, recorder = forward(session.model, session.tree, inp, rewrite=tape.rewrites)
    _check(recorder, graph, tail)
    final = main_output(output)
    if not tape.makes(final):
        raise _Unreached
    chosen = chosen or choose_objective(spec, output, inp, targets, session.model)
    if chosen.name not in DISTRIBUTIONS:
        raise _NotADistribution(chosen.name)
    weights = _units(final, inp)
    reference = _Final(final)
    sums.units += float(weights.sum())
    sums.samples += int(final.shape[0])
    if kept is not None:
        kept.append(Taped(tail, tape, final, weights))
    names = ([("", tail.start)] if tail.start is not None else []) + [
        (b.name, b.join) for b in tail.blocks if b.name not in tail.skipped]
    for name, nid in names:
        state = tape.states.get(nid)
        if state is None or state.shape != tape.states[tail.end].shape:
            continue
        decoded = tape.replay(state.clone(), final)
        compare(sums, name, decoded, reference, weights)
        _read_out(sums, name, decoded, final, inp, weights)
        if chosen.name in _WITH_TARGETS:
            losses = chosen.losses(decoded, inp, targets)
            sums.add(name, "loss", float(losses.sum()))
    return chosen


@dataclass(frozen=True)
class _Current:
    """The graph the taped passes follow now, and each decoded stream's tail in it."""

    graph: Graph
    tails: dict[int, Tail]

    @classmethod
    def of(cls, graph: Graph, usable: list[Tail]) -> _Current:
        """The tails of ``graph`` for the streams of ``usable`` (same blocks by name); raises
        ``_OffGraph`` when the blocks changed (control flow that depends on the inputs)."""
        found = {tuple(b.name for b in t.blocks): t for t in tails(graph, find_blocks(graph))}
        mapped = {}
        for t in usable:
            again = found.get(tuple(b.name for b in t.blocks))
            if again is None or again.why is not None:
                raise _OffGraph("captured again on this batch, the model has other residual blocks")
            mapped[t.stream] = again
        return cls(graph, mapped)


class _OffGraph(RuntimeError):
    """The taped pass did not follow the graph the tail was read from."""


class _Unreached(Exception):
    """The stream's tail does not make the output the objective reads."""


class _NotADistribution(Exception):
    """The objective does not read the output as a prediction over classes or tokens."""


def _check(recorder: Recorder, graph: Graph, tail: Tail) -> None:
    """The taped pass must follow the captured graph up to the tail's end and through it."""
    ops = recorder.ops()
    for nid in (tail.end, *tail.ops):
        if nid >= len(ops) or ops[nid] != graph[nid].op:
            raise _OffGraph(f"the model took another path than when it was captured (node {nid})")


def _finish(tail: Tail, sums: Sums, objective: Objective) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-block means, and the stream's summary."""
    units = max(sums.units, 1.0)
    per: dict[str, dict[str, Any]] = {}
    for b in tail.blocks:
        if b.name in tail.skipped or b.name not in sums.kl:
            continue
        per[b.name] = {
            "kl_to_final": sums.kl[b.name] / units,
            "top1_agreement": sums.agree[b.name] / units,
            "entropy": sums.entropy[b.name] / units,
            "loss": sums.loss[b.name] / sums.samples if b.name in sums.loss and sums.samples else None,
            "units": round(sums.units),
        }
    order = [b.name for b in tail.blocks if b.name in per]
    reach = next((k for k, b in enumerate(tail.blocks, 1)
                  if b.name in per and per[b.name]["top1_agreement"] >= 0.9), None)
    logp = [sums.logp[n] / units for n in order]
    base = sums.logp[""] / units if "" in sums.logp else None
    shares: list[float | None] = []
    if logp:  # from the stream's input state; without one, from the first block decoded
        start = base if base is not None else logp[0]
        total = logp[-1] - start
        if not math.isclose(total, 0.0, abs_tol=1e-12):
            shares = [None if prev is None else (v - prev) / total
                      for prev, v in zip([base, *logp[:-1]], logp)]
    stream = {"id": tail.stream, "blocks": order, "agreement_90_step": reach,
              "log_prob_share": shares or None,
              "input_kl_to_final": sums.kl[""] / units if "" in sums.kl else None,
              "readout": _readout(sums, order)}
    return per, stream


_SHOWN = 8  # positions of the first sample in the readout table


def _read_out(sums: Sums, name: str, decoded: Tensor, final: Tensor, inp: Inputs, weights: Tensor) -> None:
    """Keep the top-1 of a few positions of the first sample (sequence outputs only), the first
    batch only: the readout table of docs/lens.md."""
    if final.dim() != 3:
        return
    if sums.readout is None:
        real = [int(i) for i in torch.nonzero(weights[0] > 0).reshape(-1)]
        step = max(len(real) // _SHOWN, 1)
        positions = real[::step][:_SHOWN]
        ids = inp.kwargs.get("input_ids", inp.args[0] if inp.args else None)
        given = (ids[0, positions].tolist() if isinstance(ids, Tensor) and not ids.is_floating_point()
                 and tuple(ids.shape[:2]) == tuple(final.shape[:2]) else None)
        top = final[0, positions].argmax(-1).tolist()
        sums.readout = {"positions": positions, "input": given, "final": top, "top": {}}
    if name not in sums.readout["top"]:  # the first batch's
        sums.readout["top"][name] = decoded[0, sums.readout["positions"]].argmax(-1).tolist()


def _readout(sums: Sums, order: list[str]) -> dict[str, Any] | None:
    if sums.readout is None:
        return None
    r = sums.readout
    return {"positions": r["positions"], "input": r["input"], "final": r["final"],
            "blocks": [r["top"].get(n) for n in order]}
