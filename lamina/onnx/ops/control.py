"""ONNX control flow: If and Loop, running their subgraphs (``module.Subgraph``) on Lamina.

A subgraph reads, by name, the values of the graphs around it: the node's ``scope`` holds them
while it runs. Loop's scan outputs are stacked along a new first axis. The tensors flow through
Lamina ops inside the bodies, so gradients pass through the branch taken and every iteration.
"""
from __future__ import annotations

import numpy as np

import lamina

from . import onnx_op
from ._util import fail, scalar, wrap


@onnx_op("If")
def if_(node, cond):
    branch = node.attrs["then_branch"] if bool(scalar(cond)) else node.attrs["else_branch"]
    outs = branch(node.scope)
    return tuple(outs) if len(outs) != 1 else outs[0]


@onnx_op("Loop")
def loop(node, trip=None, cond=None, *carried):
    body = node.attrs["body"]
    n_carried = len(carried)
    if len(body.input_names) != n_carried + 2:
        fail(node, f"the body takes {len(body.input_names)} inputs for {n_carried} loop-carried values "
                   f"(expected {n_carried + 2})")
    limit = None if trip is None else int(scalar(trip))
    going = True if cond is None else bool(scalar(cond))
    values = list(carried)
    scans = []
    i = 0
    while going and (limit is None or i < limit):
        outs = body(node.scope, wrap(np.array(i, np.int64)), wrap(np.array(going)), *values)
        going = bool(scalar(outs[0]))
        values = outs[1:1 + n_carried]
        scans.append(outs[1 + n_carried:])
        i += 1
    n_scan = len(body.output_names) - 1 - n_carried
    stacked = []
    for j in range(n_scan):
        if scans:
            stacked.append(lamina.stack([s[j] for s in scans], 0))
        else:  # no iteration ran: an empty scan output
            stacked.append(wrap(np.zeros((0,), np.float32)))
    outs = tuple(values) + tuple(stacked)
    return outs if len(outs) != 1 else outs[0]


@onnx_op("Scan")
def scan(node, *inputs):
    if node.opset < 9:
        fail(node, "Scan before opset 9 (with sequence_lens) is not supported")
    body = node.attrs["body"]
    k = node.attr("num_scan_inputs")
    states, xs = list(inputs[:len(inputs) - k]), inputs[len(inputs) - k:]
    in_axes = node.attr("scan_input_axes") or [0] * k
    in_dirs = node.attr("scan_input_directions") or [0] * k
    slices = []
    for x, a, d in zip(xs, in_axes, in_dirs):
        parts = list(lamina.unbind(x, a % x.ndim))
        slices.append(parts[::-1] if d else parts)
    steps = len(slices[0]) if slices else 0
    if any(len(s) != steps for s in slices):
        fail(node, f"scan inputs of shapes {[tuple(x.shape) for x in xs]} differ in length along their axes")
    n_state = len(states)
    outs_per_step = []
    for t in range(steps):
        outs = body(node.scope, *states, *[s[t] for s in slices])
        states = outs[:n_state]
        outs_per_step.append(outs[n_state:])
    n_out = len(body.output_names) - n_state
    out_axes = node.attr("scan_output_axes") or [0] * n_out
    out_dirs = node.attr("scan_output_directions") or [0] * n_out
    results = []
    for j in range(n_out):
        seq = [o[j] for o in outs_per_step]
        if out_dirs[j]:
            seq = seq[::-1]
        r = seq[0].ndim + 1
        results.append(lamina.stack(seq, out_axes[j] % r))
    outs = tuple(states) + tuple(results)
    return outs if len(outs) != 1 else outs[0]
