"""``distgrad.nn.functional``: activations, losses, conv/pool/norm as functions (being written)."""
