"""ONNX LSTM, GRU and RNN on Lamina's recurrent ops.

The common configurations (default activations, no clip, no peepholes, and for GRU
``linear_before_reset=1``, which is PyTorch's GRU) run on ``lamina.ops.rnn``'s fused sequence
ops, one call per direction, after reordering ONNX's gate blocks (LSTM i,o,f,c; GRU z,r,h) into
Lamina's (LSTM i,f,g,o; GRU r,z,n). Everything else the ONNX operators allow (other activations,
clip, peepholes, ``input_forget``, GRU with ``linear_before_reset=0``) runs as a step-by-step
recurrence of Lamina ops. Both paths are differentiable.
"""
from __future__ import annotations

import numpy as np

import lamina
import lamina.nn.functional as F
from lamina.ops import rnn as rnn_ops

from . import onnx_op
from ._util import fail, host, wrap

_ACT = {
    "Sigmoid": lambda x, a, b: lamina.sigmoid(x),
    "Tanh": lambda x, a, b: lamina.tanh(x),
    "Relu": lambda x, a, b: lamina.relu(x),
    "LeakyRelu": lambda x, a, b: F.leaky_relu(x, a),
    "ThresholdedRelu": lambda x, a, b: lamina.where(x > a, x, x * 0),
    "ScaledTanh": lambda x, a, b: lamina.tanh(x * b) * a,
    "HardSigmoid": lambda x, a, b: lamina.clamp(x * a + b, 0.0, 1.0),
    "Elu": lambda x, a, b: F.elu(x, a),
    "Softsign": lambda x, a, b: x / (1 + lamina.abs(x)),
    "Softplus": lambda x, a, b: F.softplus(x),
    "Affine": lambda x, a, b: x * a + b,
}
_DEFAULT_ALPHA = {"LeakyRelu": 0.01, "ThresholdedRelu": 1.0, "ScaledTanh": 1.0, "HardSigmoid": 0.2, "Elu": 1.0,
                  "Affine": 1.0}
_DEFAULT_BETA = {"ScaledTanh": 1.0, "HardSigmoid": 0.5, "Affine": 0.0}


def _activations(node, defaults, dirs):
    names = node.attr("activations") or defaults * dirs
    names = [n if n in _ACT else n.capitalize() if n.capitalize() in _ACT else n for n in names]
    bad = [n for n in names if n not in _ACT]
    if bad:
        fail(node, f"unsupported activations {bad}")
    if len(names) != len(defaults) * dirs:
        fail(node, f"expected {len(defaults) * dirs} activations, got {names}")
    alphas = list(node.attr("activation_alpha") or [])
    betas = list(node.attr("activation_beta") or [])
    out = []
    for n in names:
        a = alphas.pop(0) if n in _DEFAULT_ALPHA and alphas else _DEFAULT_ALPHA.get(n, 0.0)
        b = betas.pop(0) if n in _DEFAULT_BETA and betas else _DEFAULT_BETA.get(n, 0.0)
        out.append((n, lambda x, f=_ACT[n], a=a, b=b: f(x, a, b)))
    return out


def _setup(node, x, w, gates):
    direction = node.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        fail(node, f"unknown direction {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    layout = node.attr("layout", 0)
    if layout:
        x = lamina.permute(x, (1, 0, 2))
    T, B, _ = x.shape
    H = node.attr("hidden_size") or w.shape[1] // gates
    if w.shape[0] != dirs or w.shape[1] != gates * H:
        fail(node, f"W of shape {w.shape} does not fit {dirs} direction(s) of {gates}x{H} gates")
    reverse = [direction == "reverse"] if dirs == 1 else [False, True]
    return x, T, B, H, dirs, reverse, layout


def _state(t, d, layout, B, H, x):
    if t is None:
        return lamina.zeros((B, H), dtype=x.dtype, device=x.device)
    return t[:, d] if layout else t[d]


def _blocks(t, H, order):
    parts = lamina.split(t, H, 0)
    return lamina.cat([parts[i] for i in order], 0)


def _lengths(seq_lens, T, B):
    if seq_lens is None:
        return None
    lens = host(seq_lens).astype(np.int64)
    if (lens == T).all():
        return None
    return wrap(lens, seq_lens)


def _finish(node, ys, hs, cs, layout):
    y = lamina.stack(ys, 1)                       # (T, D, B, H)
    h = lamina.stack(hs, 0)                       # (D, B, H)
    c = lamina.stack(cs, 0) if cs else None
    if layout:
        y = lamina.permute(y, (2, 0, 1, 3))       # (B, T, D, H)
        h = lamina.permute(h, (1, 0, 2))
        c = lamina.permute(c, (1, 0, 2)) if c is not None else None
    outs = (y, h) + ((c,) if c is not None else ())
    return outs[:max(len(node.outputs), 1)]


def _project(x, w, b):
    T, B, I = x.shape
    g = lamina.matmul(lamina.reshape(x, (T * B, I)), w.mT)
    if b is not None:
        g = g + b
    return lamina.reshape(g, (T, B, w.shape[0]))


def _time_reversed(x, lens):
    """Each sequence reversed within its length (for a reverse pass over padded batches)."""
    T, B = x.shape[0], x.shape[1]
    t = np.arange(T)[:, None]
    src = np.where(t < lens[None, :], lens[None, :] - 1 - t, t)          # (T, B)
    idx = np.broadcast_to((src * B + np.arange(B))[:, :, None], x.shape)
    flat = lamina.reshape(x, (T * B,) + tuple(x.shape[2:]))
    return lamina.reshape(lamina.index_select(flat, 0, wrap(idx[:, :, 0].reshape(-1), x)), x.shape)


def _loop(x, lens, reverse, step, states):
    """Run ``step(x_t, states) -> (h, states)`` over time; past a sequence's length the states
    hold and the output is zero."""
    lens_np = None if lens is None else host(lens)
    if reverse:
        x = lamina.flip(x, (0,)) if lens_np is None else _time_reversed(x, lens_np)
    ys = []
    for t, xt in enumerate(lamina.unbind(x, 0)):
        h, new = step(xt, states)
        if lens_np is not None and (lens_np <= t).any():
            m = wrap((lens_np > t).astype(x.dtype)[:, None], x)
            new = [n * m + s * (1 - m) for n, s in zip(new, states)]
            h = h * m
        states = new
        ys.append(h)
    y = lamina.stack(ys, 0)
    if reverse:
        y = lamina.flip(y, (0,)) if lens_np is None else _time_reversed(y, lens_np)
    return y, states


@onnx_op("LSTM")
def lstm(node, x, w, r, b=None, seq_lens=None, h0=None, c0=None, p=None):
    x, T, B, H, dirs, reverse, layout = _setup(node, x, w, 4)
    acts = _activations(node, ["Sigmoid", "Tanh", "Tanh"], dirs)
    clip = node.attr("clip")
    couple = node.attr("input_forget", 0)
    peep = p is not None and bool(np.any(host(p)))
    lens = _lengths(seq_lens, T, B)
    ys, hs, cs = [], [], []
    for d in range(dirs):
        names = [a[0] for a in acts[3 * d:3 * d + 3]]
        wd, rd = w[d], r[d]
        bd = None if b is None else b[d, :4 * H] + b[d, 4 * H:]
        hd, cd = _state(h0, d, layout, B, H, x), _state(c0, d, layout, B, H, x)
        if names == ["Sigmoid", "Tanh", "Tanh"] and clip is None and not couple and not peep:
            order = (0, 2, 3, 1)  # ONNX i,o,f,c -> Lamina i,f,g,o
            xg = _project(x, _blocks(wd, H, order), None if bd is None else _blocks(bd, H, order))
            y, hn, cn = rnn_ops.lstm_sequence(xg, _blocks(rd, H, order), hd, cd, lens, reverse[d])
        else:
            f, g, h = (a[1] for a in acts[3 * d:3 * d + 3])
            xg = _project(x, wd, bd)
            pi, po, pf = (lamina.split(p[d], H, 0) if peep else (None, None, None))

            def step(xt, st, rd=rd, f=f, g=g, h=h, pi=pi, po=po, pf=pf):
                hp, cp = st
                a = xt + lamina.matmul(hp, rd.mT)
                if clip is not None:
                    a = lamina.clamp(a, -clip, clip)
                ai, ao, af, ac = lamina.split(a, H, 1)
                i = f(ai + cp * pi if pi is not None else ai)
                fg = 1 - i if couple else f(af + cp * pf if pf is not None else af)
                c = fg * cp + i * g(ac)
                o = f(ao + c * po if po is not None else ao)
                hn = o * h(c)
                return hn, [hn, c]
            y, (hn, cn) = _loop(xg, lens, reverse[d], step, [hd, cd])
        ys.append(y)
        hs.append(hn)
        cs.append(cn)
    return _finish(node, ys, hs, cs, layout)


@onnx_op("GRU")
def gru(node, x, w, r, b=None, seq_lens=None, h0=None):
    x, T, B, H, dirs, reverse, layout = _setup(node, x, w, 3)
    acts = _activations(node, ["Sigmoid", "Tanh"], dirs)
    clip = node.attr("clip")
    lbr = node.attr("linear_before_reset", 0)
    lens = _lengths(seq_lens, T, B)
    ys, hs = [], []
    for d in range(dirs):
        names = [a[0] for a in acts[2 * d:2 * d + 2]]
        wd, rd = w[d], r[d]
        wb = None if b is None else b[d, :3 * H]
        rb = None if b is None else b[d, 3 * H:]
        hd = _state(h0, d, layout, B, H, x)
        if names == ["Sigmoid", "Tanh"] and clip is None and lbr:
            order = (1, 0, 2)  # ONNX z,r,h -> Lamina r,z,n
            xg = _project(x, _blocks(wd, H, order), None if wb is None else _blocks(wb, H, order))
            rbh = lamina.zeros(3 * H, dtype=x.dtype, device=x.device) if rb is None else _blocks(rb, H, order)
            y, hn = rnn_ops.gru_sequence(xg, _blocks(rd, H, order), rbh, hd, lens, reverse[d])
        else:
            f, g = (a[1] for a in acts[2 * d:2 * d + 2])
            xg = _project(x, wd, wb)
            rz, rr, rh = lamina.split(rd, H, 0)
            bz, br, bh = lamina.split(rb, H, 0) if rb is not None else (None, None, None)

            def step(xt, st, rz=rz, rr=rr, rh=rh, bz=bz, br=br, bh=bh, f=f, g=g):
                (hp,) = st
                xz, xr, xh = lamina.split(xt, H, 1)

                def lin(v, m, bias):
                    out = lamina.matmul(v, m.mT)
                    return out + bias if bias is not None else out

                def clipped(v):
                    return lamina.clamp(v, -clip, clip) if clip is not None else v
                z = f(clipped(xz + lin(hp, rz, bz)))
                rg = f(clipped(xr + lin(hp, rr, br)))
                if lbr:
                    hh = g(clipped(xh + rg * lin(hp, rh, bh)))
                else:
                    hh = g(clipped(xh + lin(rg * hp, rh, bh)))
                hn = (1 - z) * hh + z * hp
                return hn, [hn]
            y, (hn,) = _loop(xg, lens, reverse[d], step, [hd])
        ys.append(y)
        hs.append(hn)
    return _finish(node, ys, hs, None, layout)


@onnx_op("RNN")
def rnn(node, x, w, r, b=None, seq_lens=None, h0=None):
    x, T, B, H, dirs, reverse, layout = _setup(node, x, w, 1)
    acts = _activations(node, ["Tanh"], dirs)
    clip = node.attr("clip")
    lens = _lengths(seq_lens, T, B)
    ys, hs = [], []
    for d in range(dirs):
        name, f = acts[d]
        wd, rd = w[d], r[d]
        bd = None if b is None else b[d, :H] + b[d, H:]
        hd = _state(h0, d, layout, B, H, x)
        xg = _project(x, wd, bd)
        if name in ("Tanh", "Relu") and clip is None:
            y, hn = rnn_ops.rnn_sequence(xg, rd, hd, lens, reverse[d], name.lower())
        else:
            def step(xt, st, rd=rd, f=f):
                a = xt + lamina.matmul(st[0], rd.mT)
                hn = f(lamina.clamp(a, -clip, clip) if clip is not None else a)
                return hn, [hn]
            y, (hn,) = _loop(xg, lens, reverse[d], step, [hd])
        ys.append(y)
        hs.append(hn)
    return _finish(node, ys, hs, None, layout)
