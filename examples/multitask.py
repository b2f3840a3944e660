"""A multi-task network on the digits: a shared trunk with two heads (the digit class, and
whether the digit is even), trained on the sum of both losses.

    python examples/multitask.py
"""

import common  # first: sets the BLAS threads before numpy loads

import distgrad as dg
from distgrad import nn
from distgrad.data import DataLoader, TensorDataset
from distgrad.data.datasets import load_digits


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
        self.digit = nn.Linear(128, 10)
        self.parity = nn.Linear(128, 1)

    def forward(self, x):
        h = self.trunk(x)
        return self.digit(h), self.parity(h).squeeze(1)


dg.manual_seed(0)
x_train, y_train, x_test, y_test = load_digits()
loader = DataLoader(
    TensorDataset(x_train, y_train),
    batch_size=64,
    shuffle=True,
    generator=dg.Generator().manual_seed(0),
)
model = TwoHeads()
opt = dg.optim.Adam(model.parameters(), lr=1e-3)
bar = common.progress(range(25), desc="train", unit="epoch")
for _epoch in bar:
    total, count = 0.0, 0
    for xb, yb in loader:
        digit_logits, parity_logit = model(xb)
        loss = nn.functional.cross_entropy(
            digit_logits, yb
        ) + nn.functional.binary_cross_entropy_with_logits(parity_logit, (yb % 2 == 0).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        total, count = total + loss.item() * len(yb), count + len(yb)
    bar.set_postfix(loss=f"{total / count:.4f}")

model.eval()
with dg.no_grad():
    digit_logits, parity_logit = model(x_test)
digit_acc = (digit_logits.argmax(1) == y_test).float().mean().item()
parity_acc = ((parity_logit > 0) == (y_test % 2 == 0)).float().mean().item()
print(f"test accuracy: digit {digit_acc:.3f}, parity {parity_acc:.3f}")
assert digit_acc > 0.93 and parity_acc > 0.9
