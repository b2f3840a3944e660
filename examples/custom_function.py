"""A custom autograd Function: a 'bent identity' activation with its own backward, checked
with gradcheck and used in a model."""

import distgrad as dg
from distgrad import nn
from distgrad.autograd import Function, gradcheck


class BentIdentity(Function):
    """f(x) = (sqrt(x^2 + 1) - 1) / 2 + x,  f'(x) = x / (2 sqrt(x^2 + 1)) + 1."""

    @staticmethod
    def forward(ctx, x):
        root = dg.sqrt(x * x + 1)
        ctx.save_for_backward(x, root)
        return (root - 1) / 2 + x

    @staticmethod
    def backward(ctx, grad_output):
        x, root = ctx.saved_tensors
        return grad_output * (x / (2 * root) + 1)


x = dg.randn(6, dtype=dg.float64, requires_grad=True)
print("gradcheck:", gradcheck(BentIdentity.apply, (x,)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 32), nn.Linear(32, 1)

    def forward(self, x):
        return self.fc2(BentIdentity.apply(self.fc1(x)))


dg.manual_seed(0)
net = Net()
inputs = dg.randn(128, 2)
targets = (inputs[:, :1] * inputs[:, 1:]).sin()
opt = dg.optim.Adam(net.parameters(), lr=0.01)
for _ in range(300):
    loss = nn.functional.mse_loss(net(inputs), targets)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(
    f"grad_fn of the hidden activation: {net.fc1(inputs).grad_fn.name()} -> "
    f"{BentIdentity.apply(net.fc1(inputs)).grad_fn.name()}; final mse {loss.item():.4f}"
)
assert loss.item() < 0.05
