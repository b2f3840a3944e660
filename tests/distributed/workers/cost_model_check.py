"""Calibrate the cost model on this job's ranks and time the MLP benchmark's step collectives
of every mode, interleaved with the calibration; rank 0 prints one JSON line: per mode the
measured and the predicted seconds."""

import json

import distgrad.distributed as dist
from distgrad.distributed import cost_model

MODES = ("ddp", "fp16", "zero1", "zero2", "zero3")
comm = dist.init()
steps = {f"step:{mode}": cost_model.collectives(mode, "mlp") for mode in MODES}
sizes = [s for s in cost_model.SWEEP if s <= 4 << 20]
links, _, measured = cost_model.calibrate(comm, sizes, repeats=9, extra=steps)
cluster = cost_model.calibrated_cluster(links)
result = {
    mode: (measured[f"step:{mode}"], cost_model.step_time(mode, "mlp", comm.world_size, cluster))
    for mode in MODES
}
if comm.rank == 0:
    print("RESULT " + json.dumps(result), flush=True)
