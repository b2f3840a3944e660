# Source: pytorch/tutorials beginner_source/blitz/autograd_tutorial.py
# Cut: resnet18 (torchvision) replaced by a small conv net with the same input/label shapes
# (1x3x64x64, 1000 classes); the tutorial's single SGD step run 3 times.
# Compare: scale
import torch
from torch import nn, optim

LOSSES = []

model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 1000))
data = torch.rand(1, 3, 64, 64)
labels = torch.rand(1, 1000)

prediction = model(data) # forward pass

loss = (prediction - labels).sum()
loss.backward() # backward pass

optim = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)

optim.step() #gradient descent
for _ in range(3):
    optim.zero_grad()
    prediction = model(data)
    loss = (prediction - labels).sum()
    loss.backward()
    optim.step()
    LOSSES.append(abs(loss.item()))

a = torch.tensor([2., 3.], requires_grad=True)
b = torch.tensor([6., 4.], requires_grad=True)

Q = 3*a**3 - b**2

external_grad = torch.tensor([1., 1.])
Q.backward(gradient=external_grad)

# check if collected gradients are correct
print(9*a**2 == a.grad)
print(-2*b == b.grad)
LOSSES.append(a.grad.sum().item())

x = torch.rand(5, 5)
y = torch.rand(5, 5)
z = torch.rand((5, 5), requires_grad=True)

a = x + y
print(f"Does `a` require gradients?: {a.requires_grad}")
b = x + z
print(f"Does `b` require gradients?: {b.requires_grad}")

from torch import nn, optim

model = nn.Sequential(nn.Linear(512, 1000))  # compat: in place of resnet18(weights=...)

# Freeze all the parameters in the network
for param in model.parameters():
    param.requires_grad = False

model.fc = nn.Linear(512, 10)

# Optimize only the classifier
optimizer = optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
