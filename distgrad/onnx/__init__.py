"""``distgrad.onnx``: export a model to ONNX (``export``), as ``torch.onnx.export``.

The model runs once in eval mode with an interceptor recording every op call (``trace``),
then a converter per op class (``converters``) writes the ONNX nodes. The ``onnx`` package is
imported only by ``export``; ``pip install 'distgrad[onnx]'`` installs it and onnxruntime.
"""

from .converters import UnsupportedOperatorError, converter, supported_ops
from .export import export

__all__ = ["export", "UnsupportedOperatorError", "supported_ops", "converter"]
