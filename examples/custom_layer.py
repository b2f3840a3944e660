"""A custom layer: an nn.Module combining Linear and ReLU, trained on a toy regression."""

import distgrad as dg
from distgrad import nn


class LinearReLU(nn.Module):
    """Linear followed by ReLU, with a learnable output scale."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.scale = nn.Parameter(dg.ones(out_features))

    def forward(self, x):
        return dg.relu(self.linear(x)) * self.scale


dg.manual_seed(0)
model = nn.Sequential(LinearReLU(3, 16), nn.Linear(16, 1))
print(model)
x = dg.randn(256, 3)
target = (x[:, :1] * 2 - x[:, 1:2]).abs()
opt = dg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for _step in range(200):
    loss = nn.functional.mse_loss(model(x), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"final mse: {loss.item():.4f}  parameters: {sum(p.numel() for p in model.parameters())}")
assert loss.item() < 0.05
