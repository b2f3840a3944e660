"""A user-written optimizer: subclass optim.Optimizer and implement step()."""

import distgrad as dg
from distgrad import nn, optim


class SignSGD(optim.Optimizer):
    """Moves each parameter by -lr * sign(grad), with optional momentum on the sign."""

    def __init__(self, params, lr=0.01, momentum=0.0):
        if lr <= 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    @dg.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with dg.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.sign()
                if group["momentum"]:
                    buf = self.state[p].get("momentum_buffer")
                    buf = (
                        update.clone() if buf is None else buf.mul_(group["momentum"]).add_(update)
                    )
                    self.state[p]["momentum_buffer"] = buf
                    update = buf
                p.add_(update, alpha=-group["lr"])
        return loss


dg.manual_seed(0)
true_w = dg.tensor([[1.5, -2.0, 0.5]])
x = dg.randn(512, 3)
y = x @ true_w.T
model = nn.Linear(3, 1, bias=False)
opt = SignSGD(model.parameters(), lr=0.01, momentum=0.5)
for _step in range(400):

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    loss = opt.step(closure)
print(
    f"learned w = {[round(v, 2) for v in model.weight.detach().numpy().ravel().tolist()]}, "
    f"true w = {true_w.tolist()[0]}, final loss {loss.item():.5f}"
)
print("optimizer state_dict keys:", list(opt.state_dict()["state"][0]))
assert loss.item() < 1e-2
