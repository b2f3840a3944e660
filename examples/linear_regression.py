"""Linear regression on scikit-learn's diabetes data (bundled, no download), solved by
gradient descent and compared with the closed-form least-squares solution."""

import numpy as np

import distgrad as dg
from distgrad import nn

try:
    from sklearn.datasets import load_diabetes
except ImportError as exc:
    raise SystemExit("this example needs scikit-learn: pip install 'distgrad[examples]'") from exc

data = load_diabetes()
X = (data.data - data.data.mean(0)) / data.data.std(0)
y = (data.target - data.target.mean()) / data.target.std()
x_t, y_t = dg.tensor(X, dtype=dg.float64), dg.tensor(y[:, None], dtype=dg.float64)

dg.manual_seed(0)
model = nn.Linear(X.shape[1], 1).double()
opt = dg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
for _epoch in range(2000):
    loss = nn.functional.mse_loss(model(x_t), y_t)
    opt.zero_grad()
    loss.backward()
    opt.step()

A = np.hstack([X, np.ones((len(X), 1))])
w_ls, *_ = np.linalg.lstsq(A, y, rcond=None)
mse_ls = float(np.mean((A @ w_ls - y) ** 2))
print(f"gradient descent mse {loss.item():.5f}, least squares mse {mse_ls:.5f}")
gap = float(np.abs(model.weight.detach().numpy().ravel() - w_ls[:-1]).max())
print(f"max |w - w_ls| = {gap:.2e}")
assert gap < 1e-6  # gradient descent reaches the least-squares optimum
