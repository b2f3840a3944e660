"""LSTM and Transformer training steps against torch CPU, side by side (interleaved blocks,
medians): forward, loss, backward and an Adam step, same weights on both sides (checked to
give the same loss before timing). Run at 1 thread:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        .venv/bin/python benchmarks/bench_rnn_transformer.py [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidebyside import compare, report, torch_or_none  # noqa: E402

import distgrad as dg  # noqa: E402


def _copy_weights(ours, theirs):
    ours.load_state_dict(
        {k: dg.tensor(v.detach().numpy().copy()) for k, v in theirs.state_dict().items()}
    )


def _step_fns(torch, make_pair, x, target):
    ours, theirs = make_pair()
    _copy_weights(ours, theirs)
    opt_dg = dg.optim.Adam(ours.parameters(), lr=1e-3)
    opt_t = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    x_dg, y_dg = dg.tensor(x), dg.tensor(target)
    x_t, y_t = torch.tensor(x), torch.tensor(target)

    def step_dg():
        opt_dg.zero_grad()
        loss = dg.nn.functional.mse_loss(ours(x_dg), y_dg)
        loss.backward()
        opt_dg.step()
        return loss

    def step_t():
        opt_t.zero_grad()
        loss = torch.nn.functional.mse_loss(theirs(x_t), y_t)
        loss.backward()
        opt_t.step()
        return loss

    with dg.no_grad():
        a = dg.nn.functional.mse_loss(ours(x_dg), y_dg).item()
    with torch.no_grad():
        b = torch.nn.functional.mse_loss(theirs(x_t), y_t).item()
    assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), (a, b)
    return step_dg, step_t


def _lstm_pair(torch, inp, hidden, layers):
    class Ours(dg.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = dg.nn.LSTM(inp, hidden, layers)
            self.head = dg.nn.Linear(hidden, inp)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(inp, hidden, layers)
            self.head = torch.nn.Linear(hidden, inp)

        def forward(self, x):
            return self.head(self.rnn(x)[0])

    return lambda: (Ours(), Theirs())


def _transformer_pair(torch, d_model, nhead, layers, ff):
    def make():
        kw = dict(dim_feedforward=ff, dropout=0.0, batch_first=True)
        ours = dg.nn.TransformerEncoder(dg.nn.TransformerEncoderLayer(d_model, nhead, **kw), layers)
        theirs = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(d_model, nhead, **kw),
            layers,
            enable_nested_tensor=False,
        )
        return ours, theirs

    return make


def _full_transformer_pair(torch, d_model, nhead, layers, ff, seq):
    def wrap(lib, base):
        class Model(base):
            def __init__(self):
                super().__init__()
                self.t = lib.nn.Transformer(
                    d_model, nhead, layers, layers, ff, dropout=0.0, batch_first=True
                )
                self.mask = lib.nn.Transformer.generate_square_subsequent_mask(seq)

            def forward(self, x):
                return self.t(x, x, tgt_mask=self.mask, tgt_is_causal=True)

        return Model()

    return lambda: (wrap(dg, dg.nn.Module), wrap(torch, torch.nn.Module))


def main(quick: bool = False) -> None:
    torch = torch_or_none()
    if torch is None:
        print("torch is not installed: nothing to compare against")
        return
    rng = np.random.default_rng(0)
    blocks = 5 if quick else 15
    rows = []
    for seq, batch, inp, hidden, layers in ((35, 20, 32, 128, 2), (50, 32, 64, 256, 1)):
        x = rng.standard_normal((seq, batch, inp)).astype(np.float32)
        y = rng.standard_normal((seq, batch, inp)).astype(np.float32)
        f_dg, f_t = _step_fns(torch, _lstm_pair(torch, inp, hidden, layers), x, y)
        name = f"LSTM T={seq} N={batch} I={inp} H={hidden} L={layers}"
        rows.append(compare(name, {"distgrad": f_dg, "torch": f_t}, blocks=blocks))
    for batch, seq, d_model, nhead, layers, ff in ((16, 64, 128, 4, 2, 512),):
        x = rng.standard_normal((batch, seq, d_model)).astype(np.float32)
        y = rng.standard_normal((batch, seq, d_model)).astype(np.float32)
        f_dg, f_t = _step_fns(torch, _transformer_pair(torch, d_model, nhead, layers, ff), x, y)
        name = f"TransformerEncoder N={batch} S={seq} E={d_model} H={nhead} L={layers} FF={ff}"
        rows.append(compare(name, {"distgrad": f_dg, "torch": f_t}, blocks=blocks))
    for batch, seq, d_model, nhead, layers, ff in ((16, 32, 128, 4, 2, 512),):
        x = rng.standard_normal((batch, seq, d_model)).astype(np.float32)
        y = rng.standard_normal((batch, seq, d_model)).astype(np.float32)
        pair = _full_transformer_pair(torch, d_model, nhead, layers, ff, seq)
        f_dg, f_t = _step_fns(torch, pair, x, y)
        name = f"Transformer enc-dec N={batch} S=T={seq} E={d_model} H={nhead} L={layers}+{layers}"
        rows.append(compare(name, {"distgrad": f_dg, "torch": f_t}, blocks=blocks))
    report(rows, "training step (forward + MSE + backward + Adam), float32")


if __name__ == "__main__":
    main("--quick" in sys.argv)
