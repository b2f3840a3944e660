"""The benchmark models, written once for either framework.

Every builder takes the framework's namespace (``torch`` or ``distgrad``) and uses only the
names both share (``ns.nn.*``, ``ns.nn.functional``, ``ns.optim``, ``ns.triu``...), so torch
and distgrad run literally the same code. ``copy_weights`` makes two builds start from the
same values (by parameter/buffer name, through numpy), so a side-by-side can check that both
compute the same loss before it times them.

    import torch, distgrad
    from models import lenet, copy_weights
    a, b = lenet(distgrad), lenet(torch)
    copy_weights(a, b)
"""

from __future__ import annotations

import numpy as np

# Sizes named in issue 12's table.
MLP_SIZES = (784, 1024, 1024, 10)
LM = {"vocab": 1000, "d_model": 256, "heads": 4, "ff": 1024, "layers": 2, "batch": 16, "seq": 128}
LENET_BATCH = 64
RESNET = {"channels": 32, "size": 32, "batch": 32, "blocks": 2, "classes": 10}


def mlp(ns):
    """MLP 784-1024-1024-10 with ReLU."""
    a, b, c, d = MLP_SIZES
    nn = ns.nn
    return nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c), nn.ReLU(), nn.Linear(c, d))


def lenet(ns):
    """LeNet-5 on 1x28x28: conv 5x5 (6, pad 2) - relu - maxpool 2 - conv 5x5 (16) - relu -
    maxpool 2 - 400-120-84-10."""
    nn = ns.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def small_cnn(ns):
    """The CNN of ``bench_cnn.py`` on 1x28x28: conv 3x3 (16, pad 1) - relu - maxpool 2 -
    conv 3x3 (32, pad 1) - relu - maxpool 2 - linear 1568 -> 10 (more convolution work per
    sample than LeNet-5)."""
    nn = ns.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


def resnet(ns):
    """A small ResNet: conv 3x3 (3 -> 32) + BN + ReLU, ``RESNET["blocks"]`` basic blocks of
    32 channels at 32x32 (conv-BN-ReLU-conv-BN + identity, ReLU), global average pool,
    linear to 10 classes."""
    nn, F = ns.nn, ns.nn.functional
    ch = RESNET["channels"]

    class BasicBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(ch)
            self.conv2 = nn.Conv2d(ch, ch, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(ch)

        def forward(self, x):
            out = F.relu(self.bn1(self.conv1(x)))
            return F.relu(self.bn2(self.conv2(out)) + x)

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, ch, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(ch)
            self.blocks = nn.Sequential(*[BasicBlock() for _ in range(RESNET["blocks"])])
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(ch, RESNET["classes"])

        def forward(self, x):
            x = self.blocks(F.relu(self.bn(self.stem(x))))
            return self.fc(self.pool(x).flatten(1))

    return ResNet()


def transformer_lm(ns):
    """A causal transformer language model: token + position embeddings, ``LM["layers"]``
    post-norm encoder layers (d256, 4 heads, ff 1024, no dropout) under a causal mask, a
    linear head over the vocabulary."""
    nn = ns.nn
    cfg = LM

    class LM_(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(cfg["vocab"], cfg["d_model"])
            self.pos = nn.Embedding(cfg["seq"], cfg["d_model"])
            self.layers = nn.ModuleList(
                [
                    nn.TransformerEncoderLayer(
                        cfg["d_model"], cfg["heads"], cfg["ff"], dropout=0.0, batch_first=True
                    )
                    for _ in range(cfg["layers"])
                ]
            )
            self.head = nn.Linear(cfg["d_model"], cfg["vocab"])
            seq = cfg["seq"]
            mask = ns.triu(ns.full((seq, seq), float("-inf")), diagonal=1)
            self.register_buffer("mask", mask, persistent=False)
            self.register_buffer("positions", ns.arange(seq), persistent=False)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(self.positions)
            for layer in self.layers:
                x = layer(x, src_mask=self.mask)
            return self.head(x).flatten(0, 1)

    return LM_()


def chain(ns, width: int = 4, depth: int = 50):
    """``depth`` rounds of ``y = tanh(y * w)`` on ``width`` elements: 2 * ``depth`` tiny
    elementwise ops, which measure per-op overhead."""
    nn = ns.nn

    class Chain(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(ns.full((width,), 0.9))

        def forward(self, x):
            for _ in range(depth):
                x = (x * self.w).tanh()
            return x

    return Chain()


def _numpy(t) -> np.ndarray:
    t = t.detach()
    return t.cpu().numpy() if hasattr(t, "cpu") else t.numpy()


def copy_weights(src, dst) -> None:
    """Copy every parameter and buffer of ``src`` into ``dst`` by name (the two builds of one
    model, in either framework). Raises KeyError when the names differ."""
    values = {n: _numpy(t) for n, t in list(src.named_parameters()) + list(src.named_buffers())}
    targets = dict(list(dst.named_parameters()) + list(dst.named_buffers()))
    missing = set(values) ^ set(targets)
    if missing:
        raise KeyError(f"parameter names differ between the two builds: {sorted(missing)}")
    for name, value in values.items():
        target = targets[name]
        arr = target.detach().numpy() if hasattr(target, "detach") else target.numpy()
        arr[...] = value
