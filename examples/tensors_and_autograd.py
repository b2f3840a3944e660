"""Tensors and autograd: the gradients of y = w * x + b, checked by hand."""

import distgrad as dg

x = dg.tensor([1.0, 2.0, 3.0])
w = dg.tensor(2.0, requires_grad=True)
b = dg.tensor(0.5, requires_grad=True)

y = w * x + b  # forward records the graph
loss = (y**2).sum()  # L = sum (w x + b)^2
loss.backward()  # dL/dw = sum 2 (w x + b) x,  dL/db = sum 2 (w x + b)

expected_dw = sum(2 * (2.0 * xi + 0.5) * xi for xi in (1.0, 2.0, 3.0))
expected_db = sum(2 * (2.0 * xi + 0.5) for xi in (1.0, 2.0, 3.0))
print(f"y = {y.tolist()}, loss = {loss.item():.2f}")
print(f"dL/dw = {w.grad.item():.2f} (by hand {expected_dw:.2f})")
print(f"dL/db = {b.grad.item():.2f} (by hand {expected_db:.2f})")
print(f"graph: {loss.grad_fn.name()} <- {loss.grad_fn.next_functions[0][0].name()}")
assert abs(w.grad.item() - expected_dw) < 1e-4 and abs(b.grad.item() - expected_db) < 1e-4
