"""Train the small language model example: a 4-layer byte-level GPT (``SmallLM``) on the Python
standard library's own sources, the text every machine with Python has (nothing downloaded).

Run:  python scripts/train_lm.py      (one CPU thread; 6 to 8 minutes)

The corpus is the standard library's top-level modules (``sysconfig.get_paths()["stdlib"]/*.py``,
sorted by name; ``_sysconfigdata*``, which describes the machine, left out), read as bytes.
Every 10th file is held out, whole. Training: 700 steps of 32 random windows of 129 bytes
(AdamW, warm-up then cosine), seeded, one thread, so the same Python and torch rewrite the
same bytes (the corpus's SHA-256 is printed and stored; another Python has another stdlib).

Writes resprobe/data/small_lm.pt (a float16 state_dict and the held-out numbers, loadable with
weights_only=True) and resprobe/data/small_lm_batch.pt (8 held-out sequences of 128 byte ids,
the example's inputs, with the training bytes' unigram distribution), and prints the held-out
loss in nats and bits per byte next to the unigram baseline's.
"""

from __future__ import annotations

import hashlib
import math
import pathlib
import platform
import sysconfig
import time

import torch
import torch.nn.functional as F

from resprobe.examples import SmallLM

DATA = pathlib.Path(__file__).resolve().parents[1] / "resprobe" / "data"
CONTEXT = 128


def corpus() -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], str]:
    """(name, bytes) of the training files and of the held-out files (every 10th), and the
    SHA-256 of all of them in order."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in root.glob("*.py") if not p.name.startswith("_sysconfigdata"))
    texts = [(p.name, p.read_bytes()) for p in paths]
    digest = hashlib.sha256()
    for name, text in texts:
        digest.update(name.encode() + b"\0" + text + b"\0")
    held = [t for i, t in enumerate(texts) if i % 10 == 9]
    train = [t for i, t in enumerate(texts) if i % 10 != 9]
    return train, held, digest.hexdigest()


def stream(texts: list[tuple[str, bytes]]) -> torch.Tensor:
    return torch.frombuffer(bytearray(b"".join(text for _, text in texts)), dtype=torch.uint8).long()


@torch.no_grad()
def evaluate(model: SmallLM, ids: torch.Tensor) -> float:
    """Mean next-byte cross-entropy (nats) over non-overlapping windows of 129 bytes."""
    model.eval()
    n = (len(ids) - 1) // CONTEXT
    windows = torch.stack([ids[i * CONTEXT:i * CONTEXT + CONTEXT + 1] for i in range(n)])
    total = 0.0
    for chunk in windows.split(64):
        logits = model(chunk[:, :-1])
        total += F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").item()
    return total / (n * CONTEXT)


def example_batch(held: list[tuple[str, bytes]], count: int = 8) -> tuple[torch.Tensor, list[str]]:
    """``count`` sequences of 128 bytes, each from its own held-out file (evenly spread over
    them), starting at the first line start past the file's middle."""
    picks = [held[round(i * (len(held) - 1) / (count - 1))] for i in range(count)]
    rows = []
    for _, text in picks:
        start = text.index(b"\n", len(text) // 2) + 1
        rows.append(list(text[start:start + CONTEXT]))
    return torch.tensor(rows, dtype=torch.long), [name for name, _ in picks]


def main(steps: int = 700, batch: int = 32, lr: float = 2e-3, warmup: int = 50, seed: int = 0) -> None:
    torch.set_num_threads(1)
    train_texts, held_texts, digest = corpus()
    train, held = stream(train_texts), stream(held_texts)
    print(f"corpus: {len(train_texts)} training files ({len(train):,} bytes), {len(held_texts)} held out "
          f"({len(held):,} bytes); sha256 {digest[:16]}", flush=True)

    counts = torch.bincount(train, minlength=256).double() + 1  # add-one: every byte possible
    unigram_probs = counts / counts.sum()
    unigram = -unigram_probs.log()[held].mean().item()

    torch.manual_seed(seed)
    model = SmallLM()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.arange(CONTEXT + 1)
    start = time.time()
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(train) - CONTEXT - 1, (batch,), generator=gen)
        x = train[idx[:, None] + offsets]
        opt.zero_grad()
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  train loss {loss.item():.3f}  {time.time() - start:.0f}s", flush=True)
    trained = time.time() - start

    state = {k: v.half() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state.items()})  # measure what ships
    held_loss = evaluate(model, held)
    ids, names = example_batch(held_texts)
    model.eval()
    with torch.no_grad():
        logits = model(ids)
        batch_loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).item()
    DATA.mkdir(parents=True, exist_ok=True)
    torch.save({"state": state, "loss": torch.tensor(held_loss), "unigram": torch.tensor(unigram),
                "python": platform.python_version(), "corpus_sha256": digest, "steps": steps},
               DATA / "small_lm.pt")
    torch.save({"input_ids": ids, "files": names, "unigram": unigram_probs.float()},
               DATA / "small_lm_batch.pt")
    ln2 = math.log(2)
    print(f"trained in {trained:.0f}s; held-out loss {held_loss:.4f} nats/byte "
          f"({held_loss / ln2:.3f} bits/byte) on {len(held):,} bytes; unigram baseline {unigram:.4f} "
          f"nats/byte ({unigram / ln2:.3f} bits/byte); the shipped batch: {batch_loss:.4f} nats/byte",
          flush=True)


if __name__ == "__main__":
    main()
