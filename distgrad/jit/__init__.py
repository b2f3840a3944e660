"""Graph mode: ``trace`` records the ops of one eager run into a static graph and replays it on
raw arrays (forward and backward) without per-op Python graph objects; ``trace_step`` captures
a whole training step, replayable as a CUDA graph on GPU."""

from .graph import Graph, TracedGraph
from .step import TracedStep, trace_step
from .tracer import TracedFunction, TraceError, TracerWarning, trace

__all__ = [
    "trace",
    "trace_step",
    "TracedFunction",
    "TracedStep",
    "TraceError",
    "TracerWarning",
    "Graph",
    "TracedGraph",
]
