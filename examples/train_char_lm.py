"""A character-level transformer language model, trained data-parallel on Python's own source.

    distgrad-run -np 2 python examples/train_char_lm.py          # or one process: python ...

The text is the source of a dozen modules of the Python standard library, which is on every
machine that has Python (no download). It is cut into windows of ``--block`` characters; each
rank trains on its share of the windows (``DistributedSampler``) and ``DataParallel`` averages
the gradients, so every rank holds the same model. The model is a small GPT: character and
position embeddings, ``--layers`` pre-norm ``TransformerEncoderLayer`` blocks with a causal
mask (a character sees only those before it), and a linear head over the vocabulary.

Every ``--sample-every`` steps rank 0 prints a sample: the model continues ``def `` one
character at a time. At first it is noise (held-out ~4 bits per character after 20 steps);
after 300 steps (2.8 bits/char, one process) it has learnt Python's layout: indented lines,
``=``, parentheses, underscores and dunder-like ``__(`` fragments between word-like pieces;
more steps, ``--width`` and ``--layers`` make it more fluent. The loss curves (training and
held-out, in bits per character) go to a PNG next to the checkpoint.
"""

import argparse
import importlib.util
import math
import os
import time

import common  # first: sets the BLAS threads before numpy loads
import numpy as np

import distgrad as dg
import distgrad.distributed as dist
from distgrad import nn
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.distributed import DistributedSampler

MODULES = [
    "textwrap", "heapq", "bisect", "shlex", "fractions", "string", "queue", "colorsys",
    "calendar", "difflib", "fnmatch", "glob", "gettext", "configparser", "argparse",
]  # fmt: skip


def load_text():
    """The concatenated source of ``MODULES``, characters outside printable ASCII as '?'."""
    parts = []
    for name in MODULES:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as f:
                parts.append(f.read())
    if not parts:
        raise RuntimeError("no standard-library source found (a Python without .py files?)")
    text = "\n".join(parts)
    return "".join(c if c == "\n" or 32 <= ord(c) < 127 else "?" for c in text)


class CharGPT(nn.Module):
    """Embeddings, causal self-attention blocks, and a head predicting the next character."""

    def __init__(self, vocab, block, width, heads, layers):
        super().__init__()
        self.block = block
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(block, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx):
        positions = dg.arange(idx.shape[1])
        x = self.tokens(idx) + self.positions(positions)
        return self.head(self.norm(self.blocks(x, is_causal=True)))


def sample(model, encode, decode, prompt, length, generator, temperature=0.8):
    """Continue ``prompt`` by ``length`` characters drawn from the model."""
    model.eval()
    idx = list(encode(prompt))
    with dg.no_grad():
        for _ in range(length):
            context = dg.tensor([idx[-model.block :]])
            logits = model(context)[0, -1] / temperature
            probs = nn.functional.softmax(logits, dim=0).numpy().astype(np.float64)
            idx.append(int(generator.choice(len(probs), p=probs / probs.sum())))
    model.train()
    return decode(idx)


def bits_per_char(model, x, y, batch=64):
    """Mean cross-entropy over held-out windows, in bits per character."""
    model.eval()
    total = 0.0
    with dg.no_grad():
        for i in range(0, len(x), batch):
            logits = model(x[i : i + batch])
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y[i : i + batch].reshape(-1)
            )
            total += loss.item() * len(x[i : i + batch])
    model.train()
    return total / len(x) / math.log(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12 if common.quick() else 600)
    parser.add_argument("--batch-size", type=int, default=16, help="windows per rank and step")
    parser.add_argument("--block", type=int, default=64, help="characters of context")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sample-every", type=int, default=6 if common.quick() else 150)
    parser.add_argument("--out", default="runs/char_lm")
    args = parser.parse_args()

    dist.init()
    rank, world = dist.rank(), dist.world_size()
    dg.manual_seed(0)
    text = load_text()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    encode = lambda s: [lookup.get(c, lookup["?"]) for c in s]
    decode = lambda ids: "".join(chars[i] for i in ids)

    data = np.array(encode(text), dtype=np.int64)
    n = (len(data) - 1) // args.block
    windows = np.arange(n * args.block).reshape(n, args.block)
    x_all, y_all = data[windows], data[windows + 1]  # y: the next character of each position
    held_out = max(1, n // 20)  # the last 5% of the text is never trained on
    train = TensorDataset(dg.tensor(x_all[:-held_out]), dg.tensor(y_all[:-held_out]))
    keep = 32 if common.quick() else 256
    x_val, y_val = dg.tensor(x_all[-held_out:][:keep]), dg.tensor(y_all[-held_out:][:keep])
    sampler = DistributedSampler(train, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler, drop_last=True)

    model = CharGPT(len(chars), args.block, args.width, args.heads, args.layers)
    model = dist.DataParallel(model)
    opt = dg.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = dg.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps)
    if rank == 0:
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{len(text):,} characters of Python ({len(MODULES)} stdlib modules), vocabulary "
            f"{len(chars)}, {n - held_out:,} training windows of {args.block}; {params:,} "
            f"parameters; {world} rank(s) x {args.batch_size} windows per step",
            flush=True,
        )

    generator = np.random.default_rng(0)
    curves = {"bits per character": ([], []), "held-out bits per character": ([], [])}
    bar = common.progress(total=args.steps, desc="train", enabled=rank == 0, unit="step")
    step, epoch, start = 0, 0, time.perf_counter()
    while step < args.steps:
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            logits = model(xb)
            loss = nn.functional.cross_entropy(logits.reshape(-1, len(chars)), yb.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            curves["bits per character"][0].append(step)
            curves["bits per character"][1].append(loss.item() / math.log(2))
            bar.update(1)
            bar.set_postfix(bpc=f"{curves['bits per character'][1][-1]:.2f}")
            if rank == 0 and (step % args.sample_every == 0 or step == args.steps):
                val = bits_per_char(model, x_val, y_val)
                curves["held-out bits per character"][0].append(step)
                curves["held-out bits per character"][1].append(val)
                length = 40 if common.quick() else 160
                text_out = sample(model.module, encode, decode, "def ", length, generator)
                common.say(bar, f"--- step {step}, held-out {val:.2f} bits/char ---\n{text_out}")
            if step == args.steps:
                break
        epoch += 1
    bar.close()

    if rank == 0:
        elapsed = time.perf_counter() - start
        os.makedirs(args.out, exist_ok=True)
        checkpoint = os.path.join(args.out, "model.safetensors")
        dg.save({"model": model.module.state_dict(), "chars": "".join(chars)}, checkpoint)
        png = common.save_curves(
            os.path.join(args.out, "loss.png"),
            curves,
            xlabel="step",
            title=f"char-level transformer on Python source, {world} rank(s)",
        )
        final = curves["held-out bits per character"][1][-1]
        print(
            f"held-out {final:.2f} bits per character after {step} steps "
            f"({world * args.batch_size * args.block * step / elapsed:,.0f} characters/s) in "
            f"{elapsed:.0f} s; checkpoint {checkpoint}" + (f"; curves {png}" if png else "")
        )
    dist.barrier()


if __name__ == "__main__":
    main()
