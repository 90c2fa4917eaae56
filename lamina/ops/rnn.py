"""Recurrences over whole sequences: ``lstm_sequence``, ``gru_sequence`` and ``rnn_sequence``.

Each op runs one layer in one direction over all time steps. The input projection of every step
(``x_t W_ih^T + b``) comes in precomputed, so the op does one matmul per step for the recurrent
part and the gate arithmetic on raw arrays, with no graph node per step. Its backward is
backpropagation through time written with Tensor ops: the elementwise factors of every step are
computed for the whole sequence at once, the loop carries only the recurrent gradient, and the
gradient of ``W_hh`` is one matmul over all steps instead of one small matmul per step.

Sequences of different lengths share a batch through an optional ``lengths`` input: past its
length a sequence keeps its state and outputs zeros, and a reverse pass starts at each sequence's
last valid step (what packed sequences give in PyTorch).

The engine's first-order path (``backward_arrays``) runs that backward on the activations forward
saved. The graph-building ``backward`` (``create_graph``) takes them from ``_*_composite``, the
same recurrence written step by step with Tensor ops, so the gradient is differentiable again.
The composites are also the oracles the ops are tested against.
"""
from __future__ import annotations

from .. import backend
from ..tensor import Tensor, _wrap
from .base import Op, xp_of
from .elementwise import relu, sigmoid, tanh, where
from .shape import cat, split, stack, unbind


def _order(T: int, reverse: bool):
    return range(T - 1, -1, -1) if reverse else range(T)


def _step_masks(xp, lengths, T: int):
    """Per step a (B, 1) bool array of the sequences still running (None where all are), and
    the (T, B, 1) array of all of them (None without lengths)."""
    if lengths is None:
        return [None] * T, None
    valid = (xp.arange(T)[:, None] < lengths[None, :])[:, :, None]
    shortest = int(lengths.min())
    return [None if t < shortest else valid[t] for t in range(T)], valid


def _pieces(x: Tensor, B: int):
    """A (T, B, F) tensor as T tensors of shape (B, F): one op however long the sequence."""
    T = x.shape[0]
    return split(x.reshape(T * B, x.shape[2]), B, 0)


def _recurrent(xp, w_hh, h, out):
    """``h @ w_hh.T`` as a (B, G) view of ``out``, a (G, B) buffer. Computed as ``w_hh @ h.T``:
    with a batch much smaller than G, OpenBLAS runs that orientation about 1.5x faster."""
    return xp.matmul(w_hh, h.T, out=out).T


def _sigmoid_(xp, a):
    """In-place sigmoid as 0.5 * (1 + tanh(a / 2)), which never overflows."""
    a *= 0.5
    xp.tanh(a, out=a)
    a += 1
    a *= 0.5
    return a


def _backward_masks(V, gy, *factors):
    """Zero the per-step factors and the output gradient past each sequence's end."""
    if V is None:
        return (gy,) + factors
    mask = _wrap(V)
    return (None if gy is None else gy * mask,) + tuple(f * mask for f in factors)


def _carry(V, dtype):
    """1.0 where a step is past its sequence's end: the state gradient passes through unchanged."""
    return None if V is None else _wrap((~V).astype(dtype))


# ---------------------------------------------------------------- LSTM

class LSTMSequence(Op):
    """``(y, h_n, c_n) = lstm(xg, W_hh, h_0, c_0[, lengths])`` with xg of shape (T, B, 4H) holding
    ``x_t W_ih^T + b_ih + b_hh`` and gates in PyTorch's order i, f, g, o."""
    name = "lstm_sequence"
    n_outputs = 3

    def __init__(self, reverse: bool):
        self.reverse = reverse

    def forward(self, xg, w_hh, h0, c0, *lengths):
        xp = xp_of(xg)
        T, B, G = xg.shape
        H = G // 4
        dtype = xg.dtype
        masks, V = _step_masks(xp, lengths[0] if lengths else None, T)
        keep = self.needs_input_grad is not None
        # sigmoid(a) = 0.5 tanh(a / 2) + 0.5, so one tanh over all four gates serves every gate
        scale = xp.full(G, 0.5, dtype=dtype)
        scale[2 * H:3 * H] = 1
        shift = 1 - scale
        # without a backward to feed, every step reuses slot 0 of the buffers backward would read
        slots = T if keep else 1
        acts = xp.empty((slots, B, G), dtype)
        tanh_c = xp.empty((slots, B, H), dtype)
        h_prev = xp.empty((T, B, H), dtype) if keep else None
        c_prev = xp.empty((T, B, H), dtype) if keep else None
        y = xp.empty((T, B, H), dtype)
        hg = xp.empty((G, B), dtype)
        h, c = h0, c0
        for t in _order(T, self.reverse):
            s = t if keep else 0
            a = acts[s]
            xp.add(_recurrent(xp, w_hh, h, hg), xg[t], out=a)
            a *= scale
            xp.tanh(a, out=a)
            a *= scale
            a += shift
            c_new = a[:, H:2 * H] * c
            c_new += a[:, :H] * a[:, 2 * H:3 * H]
            tc = xp.tanh(c_new, out=tanh_c[s])
            if keep:
                h_prev[t] = h
                c_prev[t] = c
            h_new = xp.multiply(a[:, 3 * H:], tc, out=y[t])
            m = masks[t]
            if m is None:
                h, c = h_new, c_new
            else:
                h, c = xp.where(m, h_new, h), xp.where(m, c_new, c)
                h_new *= m
        if keep:
            self.saved = (h_prev, c_prev, acts, tanh_c, V)
        return y, h.copy(), c

    def backward(self, grads, xg, w_hh, h0, c0, *lengths):
        _, _, _, steps, V = _lstm_composite(xg, w_hh, h0, c0, lengths[0] if lengths else None, self.reverse)
        return self._bptt(grads, steps, V, w_hh, h0, c0, lengths)

    def backward_arrays(self, grads, xg, w_hh, h0, c0, *lengths):
        *steps, V = self.saved
        return _on_tensors(self._bptt, grads, [_wrap(a) for a in steps], V, _wrap(w_hh), _wrap(h0), _wrap(c0),
                           lengths)

    def _bptt(self, grads, steps, V, w_hh, h0, c0, lengths):
        gy, gh, gc = grads
        h_prev, c_prev, acts, tanh_c = steps
        T, B, H = h_prev.shape
        i, f, g, o = split(acts, H, -1)
        # d(gates) = [dc, dc, dc, dh] * k, and dc picks up dh * o (1 - tanh(c)^2) on the way
        k = cat([g * (i - i * i), c_prev * (f - f * f), i * (1.0 - g * g), tanh_c * (o - o * o)], -1)
        dc_from_h = o * (1.0 - tanh_c * tanh_c)
        gy, k, dc_from_h = _backward_masks(V, gy, k, dc_from_h)
        if V is not None:
            f = where(_wrap(V), f, 1.0)
        carry = _carry(V, h_prev.dtype)
        ks, dcs, fs = _pieces(k, B), _pieces(dc_from_h, B), _pieces(f, B)
        gys = None if gy is None else _pieces(gy, B)
        dh = h0.new_zeros(h0.shape) if gh is None else gh
        dc = c0.new_zeros(c0.shape) if gc is None else gc
        masks = _masks_of(V, T)
        dgates = [None] * T
        for t in _order(T, not self.reverse):
            if gys is not None:
                dh = dh + gys[t]
            dc = dc + dh * dcs[t]
            dg = cat([dc, dc, dc, dh], -1) * ks[t]
            dgates[t] = dg
            dh_prev = dg @ w_hh
            if masks[t]:
                dh_prev = dh_prev + dh * carry[t]
            dc = dc * fs[t]
            dh = dh_prev
        dxg, dw = _input_and_weight_grads(self, dgates, h_prev)
        return dxg, dw, dh, dc, *(None,) * len(lengths)

    def onnx(self, g, xg, w_hh, h0, c0, *lengths):
        # xg already holds x W_ih^T + b: ONNX's W is the permutation from PyTorch's gate order
        # i, f, g, o to ONNX's i, o, f, c
        return g.recurrent("LSTM", (0, 3, 1, 2), xg, w_hh, [h0, c0], lengths, self.reverse)


def _lstm_composite(xg, w_hh, h0, c0, lengths, reverse):
    """The LSTM recurrence step by step with Tensor ops: (y, h_n, c_n, per-step values stacked
    over time (h_prev, c_prev, activations, tanh(c)), the (T, B, 1) valid-step mask or None)."""
    T, B, G = xg.shape
    H = G // 4
    masks, V = _composite_masks(xg, lengths)
    w_t = w_hh.mT
    xs = unbind(xg, 0)
    h, c = h0, c0
    ys, hp, cp, acts, tcs = ([None] * T for _ in range(5))
    for t in _order(T, reverse):
        i, f, g, o = split(xs[t] + h @ w_t, H, -1)
        i, f, g, o = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
        c_new = f * c + i * g
        tc = tanh(c_new)
        h_new = o * tc
        hp[t], cp[t], acts[t], tcs[t] = h, c, cat([i, f, g, o], -1), tc
        m = masks[t]
        if m is None:
            h, c, ys[t] = h_new, c_new, h_new
        else:
            h, c, ys[t] = where(m, h_new, h), where(m, c_new, c), where(m, h_new, 0.0)
    return stack(ys), h, c, (stack(hp), stack(cp), stack(acts), stack(tcs)), V


# ---------------------------------------------------------------- GRU

class GRUSequence(Op):
    """``(y, h_n) = gru(xg, W_hh, b_hh, h_0[, lengths])`` with xg of shape (T, B, 3H) holding
    ``x_t W_ih^T + b_ih``, gates r, z, n and PyTorch's n = tanh(x_n + r * (h W_hn^T + b_hn))."""
    name = "gru_sequence"
    n_outputs = 2

    def __init__(self, reverse: bool):
        self.reverse = reverse

    def forward(self, xg, w_hh, b_hh, h0, *lengths):
        xp = xp_of(xg)
        T, B, G = xg.shape
        H = G // 3
        dtype = xg.dtype
        masks, V = _step_masks(xp, lengths[0] if lengths else None, T)
        keep = self.needs_input_grad is not None
        acts = xp.empty((T if keep else 1, B, G), dtype)
        h_prev = xp.empty((T, B, H), dtype) if keep else None
        hn = xp.empty((T, B, H), dtype) if keep else None
        hg_buffer = xp.empty((G, B), dtype)
        y = xp.empty((T, B, H), dtype)
        h = h0
        for t in _order(T, self.reverse):
            a = acts[t if keep else 0]
            x = xg[t]
            hg = _recurrent(xp, w_hh, h, hg_buffer)
            hg += b_hh
            rz = xp.add(x[:, :2 * H], hg[:, :2 * H], out=a[:, :2 * H])
            _sigmoid_(xp, rz)
            n = xp.multiply(rz[:, :H], hg[:, 2 * H:], out=a[:, 2 * H:])
            n += x[:, 2 * H:]
            xp.tanh(n, out=n)
            if keep:
                h_prev[t] = h
                hn[t] = hg[:, 2 * H:]
            h_new = xp.subtract(h, n, out=y[t])
            h_new *= rz[:, H:]
            h_new += n
            m = masks[t]
            if m is None:
                h = h_new
            else:
                h = xp.where(m, h_new, h)
                h_new *= m
        if keep:
            self.saved = (h_prev, acts, hn, V)
        return y, h.copy()

    def backward(self, grads, xg, w_hh, b_hh, h0, *lengths):
        _, _, steps, V = _gru_composite(xg, w_hh, b_hh, h0, lengths[0] if lengths else None, self.reverse)
        return self._bptt(grads, steps, V, xg.shape, w_hh, h0, lengths)

    def backward_arrays(self, grads, xg, w_hh, b_hh, h0, *lengths):
        *steps, V = self.saved
        return _on_tensors(self._bptt, grads, [_wrap(a) for a in steps], V, xg.shape, _wrap(w_hh), _wrap(h0),
                           lengths)

    def _bptt(self, grads, steps, V, xg_shape, w_hh, h0, lengths):
        gy, gh = grads
        h_prev, acts, hn = steps
        T, B, H = h_prev.shape
        r, z, n = split(acts, H, -1)
        # with dh the gradient reaching h_t: d(x gates) = [dh, dh, dh] * k, d(h gates) = that * [1, 1, r]
        dn = (1.0 - z) * (1.0 - n * n)
        k = cat([dn * hn * (r - r * r), (h_prev - n) * (z - z * z), dn], -1)
        to_hidden = cat([r.new_ones(r.shape), r.new_ones(r.shape), r], -1)
        gy, k = _backward_masks(V, gy, k)
        if V is not None:
            z = where(_wrap(V), z, 1.0)  # past a sequence's end h_t = h_{t-1}
        ks, rs, zs = _pieces(k, B), _pieces(to_hidden, B), _pieces(z, B)
        gys = None if gy is None else _pieces(gy, B)
        dh = h0.new_zeros(h0.shape) if gh is None else gh
        dx, dhg = [None] * T, [None] * T
        for t in _order(T, not self.reverse):
            if gys is not None:
                dh = dh + gys[t]
            dx[t] = cat([dh, dh, dh], -1) * ks[t]
            dhg[t] = dx[t] * rs[t]
            dh = dhg[t] @ w_hh + dh * zs[t]
        nx, nw, nb = self.needs_input_grad[:3]
        dxg = cat(dx, 0).reshape(xg_shape) if nx else None
        dw, db = None, None
        if nw or nb:
            dhg = cat(dhg, 0)
            dw = dhg.mT @ h_prev.reshape(T * B, H) if nw else None
            db = dhg.sum(0) if nb else None
        return dxg, dw, db, dh, *(None,) * len(lengths)

    def onnx(self, g, xg, w_hh, b_hh, h0, *lengths):
        # PyTorch's r, z, n against ONNX's z, r, h; n = tanh(x_n + r (h W_hn + b_hn)) is linear_before_reset
        return g.recurrent("GRU", (1, 0, 2), xg, w_hh, [h0], lengths, self.reverse, b_hh=b_hh)


def _gru_composite(xg, w_hh, b_hh, h0, lengths, reverse):
    """The GRU recurrence step by step with Tensor ops: (y, h_n, per-step values stacked over time
    (h_prev, activations r z n, h W_hn^T + b_hn), the valid-step mask or None)."""
    T, B, G = xg.shape
    H = G // 3
    masks, V = _composite_masks(xg, lengths)
    w_t = w_hh.mT
    xs = unbind(xg, 0)
    h = h0
    ys, hp, acts, hns = ([None] * T for _ in range(4))
    for t in _order(T, reverse):
        xr, xz, xn = split(xs[t], H, -1)
        hr, hz, hn = split(h @ w_t + b_hh, H, -1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = tanh(xn + r * hn)
        h_new = n + z * (h - n)
        hp[t], acts[t], hns[t] = h, cat([r, z, n], -1), hn
        m = masks[t]
        if m is None:
            h, ys[t] = h_new, h_new
        else:
            h, ys[t] = where(m, h_new, h), where(m, h_new, 0.0)
    return stack(ys), h, (stack(hp), stack(acts), stack(hns)), V


# ---------------------------------------------------------------- Elman RNN

class RNNSequence(Op):
    """``(y, h_n) = rnn(xg, W_hh, h_0[, lengths])``: h_t = act(xg_t + h_{t-1} W_hh^T) with xg of
    shape (T, B, H) holding ``x_t W_ih^T + b_ih + b_hh`` and act tanh or relu."""
    name = "rnn_sequence"
    n_outputs = 2
    save_output = True  # backward reads the activations from the output

    def __init__(self, reverse: bool, nonlinearity: str):
        self.reverse, self.nonlinearity = reverse, nonlinearity

    def forward(self, xg, w_hh, h0, *lengths):
        xp = xp_of(xg)
        T, B, H = xg.shape
        masks, V = _step_masks(xp, lengths[0] if lengths else None, T)
        keep = self.needs_input_grad is not None
        h_prev = xp.empty((T, B, H), xg.dtype) if keep else None
        y = xp.empty((T, B, H), xg.dtype)
        hg = xp.empty((H, B), xg.dtype)
        use_relu = self.nonlinearity == "relu"
        h = h0
        for t in _order(T, self.reverse):
            a = xp.add(_recurrent(xp, w_hh, h, hg), xg[t], out=y[t])
            if use_relu:
                xp.maximum(a, 0, out=a)
            else:
                xp.tanh(a, out=a)
            if keep:
                h_prev[t] = h
            m = masks[t]
            if m is None:
                h = a
            else:
                h = xp.where(m, a, h)
                a *= m
        if keep:
            self.saved = (h_prev, V)
        return y, h.copy()

    def backward(self, grads, xg, w_hh, h0, *lengths):
        _, _, (h_prev, act), V = _rnn_composite(xg, w_hh, h0, lengths[0] if lengths else None,
                                                 self.reverse, self.nonlinearity)
        return self._bptt(grads, h_prev, act, V, w_hh, h0, lengths)

    def backward_arrays(self, grads, xg, w_hh, h0, *lengths):
        h_prev, V = self.saved
        # the forward output is the activation wherever a sequence runs, the only places it is read
        return _on_tensors(self._bptt, grads, _wrap(h_prev), self.output(0), V, _wrap(w_hh), _wrap(h0), lengths)

    def _bptt(self, grads, h_prev, act, V, w_hh, h0, lengths):
        gy, gh = grads
        T, B, H = h_prev.shape
        k = (act > 0).to(act.dtype) if self.nonlinearity == "relu" else 1.0 - act * act
        gy, k = _backward_masks(V, gy, k)
        carry = _carry(V, h_prev.dtype)
        ks = _pieces(k, B)
        gys = None if gy is None else _pieces(gy, B)
        masks = _masks_of(V, T)
        dh = h0.new_zeros(h0.shape) if gh is None else gh
        dpre = [None] * T
        for t in _order(T, not self.reverse):
            if gys is not None:
                dh = dh + gys[t]
            dpre[t] = dh * ks[t]
            dh_prev = dpre[t] @ w_hh
            if masks[t]:
                dh_prev = dh_prev + dh * carry[t]
            dh = dh_prev
        dxg, dw = _input_and_weight_grads(self, dpre, h_prev)
        return dxg, dw, dh, *(None,) * len(lengths)

    def onnx(self, g, xg, w_hh, h0, *lengths):
        return g.recurrent("RNN", (0,), xg, w_hh, [h0], lengths, self.reverse,
                           activation="Tanh" if self.nonlinearity == "tanh" else "Relu")


def _rnn_composite(xg, w_hh, h0, lengths, reverse, nonlinearity):
    """The Elman recurrence step by step with Tensor ops: (y, h_n, per-step values stacked over
    time (h_prev, activation), the valid-step mask or None)."""
    T = xg.shape[0]
    masks, V = _composite_masks(xg, lengths)
    w_t = w_hh.mT
    xs = unbind(xg, 0)
    act_fn = relu if nonlinearity == "relu" else tanh
    h = h0
    ys, hp, acts = ([None] * T for _ in range(3))
    for t in _order(T, reverse):
        a = act_fn(xs[t] + h @ w_t)
        hp[t], acts[t] = h, a
        m = masks[t]
        if m is None:
            h, ys[t] = a, a
        else:
            h, ys[t] = where(m, a, h), where(m, a, 0.0)
    return stack(ys), h, (stack(hp), stack(acts)), V


# ---------------------------------------------------------------- shared by the backwards

def _on_tensors(bptt, grads, *args):
    """Run a Tensor-op backward on raw arrays (the engine's first-order path): raw gradients and
    inputs in, raw gradients out. No graph is recorded (the engine runs it with grad mode off)."""
    out = bptt(tuple(None if g is None else _wrap(g) for g in grads), *args)
    return tuple(None if g is None else g.array for g in out)


def _composite_masks(xg, lengths):
    """Per-step (B, 1) bool Tensors (None where every sequence runs) and the raw (T, B, 1) mask."""
    masks, V = _step_masks(xp_of(xg.array), None if lengths is None else lengths.array, xg.shape[0])
    return [None if m is None else _wrap(m) for m in masks], V


def _masks_of(V, T):
    """Per step: does some sequence stop before it?"""
    if V is None:
        return [False] * T
    return [not bool(v) for v in V.all(axis=(1, 2)).tolist()]


def _input_and_weight_grads(op, dgates, h_prev):
    """Gradients of xg and W_hh from the per-step gate gradients: W_hh's is one matmul over all
    steps, far faster than one small matmul per step."""
    T, B, H = h_prev.shape
    nx, nw = op.needs_input_grad[:2]
    dg = cat(dgates, 0)
    dxg = dg.reshape(T, B, dg.shape[1]) if nx else None
    dw = dg.mT @ h_prev.reshape(T * B, H) if nw else None
    return dxg, dw


# ---------------------------------------------------------------- functions

def _check(opname, xg, w_hh, h0, gates, lengths, extra=()):
    """Shape, dtype and device checks shared by the three ops."""
    for what, t in (("xg", xg), ("w_hh", w_hh), ("h0", h0)) + extra:
        if not isinstance(t, Tensor):
            raise TypeError(f"{opname}: {what} must be a Tensor, got {type(t).__name__}")
    if xg.ndim != 3 or xg.shape[0] == 0 or xg.shape[2] % gates:
        raise ValueError(f"{opname}: xg must have shape (T >= 1, B, {gates} * hidden), got {xg.shape}")
    T, B, G = xg.shape
    H = G // gates
    want = {"w_hh": (G, H), "h0": (B, H), "c0": (B, H), "b_hh": (G,)}
    for what, t in (("w_hh", w_hh), ("h0", h0)) + extra:
        if t.shape != want[what]:
            raise ValueError(f"{opname}: {what} must have shape {want[what]} for xg of shape {xg.shape}, "
                             f"got {t.shape}")
        if t.dtype != xg.dtype:
            raise TypeError(f"{opname}: {what} has dtype {t.dtype} but xg has {xg.dtype}")
    if not backend.is_floating(xg.dtype):
        raise TypeError(f"{opname}: expected floating-point tensors, got {xg.dtype}")
    if lengths is None:
        return ()
    if not isinstance(lengths, Tensor):
        lengths = Tensor(lengths, dtype=backend.int64, device=xg.device)
    if lengths.dtype.kind not in "iu" or lengths.shape != (B,):
        raise ValueError(f"{opname}: lengths must be integers of shape ({B},) for xg of shape {xg.shape}, "
                         f"got {lengths.dtype} of shape {lengths.shape}")
    host = backend.to_device(lengths.array, backend.cpu)
    if B and (host.min() < 1 or host.max() > T):
        raise ValueError(f"{opname}: lengths must be in [1, {T}] for xg of shape {xg.shape}, got values in "
                         f"[{host.min()}, {host.max()}]")
    return (lengths.to(xg.device),)


def lstm_sequence(xg, w_hh, h0, c0, lengths=None, reverse=False):
    """One LSTM layer direction over a sequence; returns (y (T, B, H), h_n, c_n)."""
    extra = _check("lstm_sequence", xg, w_hh, h0, 4, lengths, (("c0", c0),))
    return LSTMSequence(bool(reverse))(xg, w_hh, h0, c0, *extra)


def gru_sequence(xg, w_hh, b_hh, h0, lengths=None, reverse=False):
    """One GRU layer direction over a sequence; returns (y (T, B, H), h_n)."""
    extra = _check("gru_sequence", xg, w_hh, h0, 3, lengths, (("b_hh", b_hh),))
    return GRUSequence(bool(reverse))(xg, w_hh, b_hh, h0, *extra)


def rnn_sequence(xg, w_hh, h0, lengths=None, reverse=False, nonlinearity="tanh"):
    """One Elman RNN layer direction over a sequence; returns (y (T, B, H), h_n)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_sequence: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    extra = _check("rnn_sequence", xg, w_hh, h0, 1, lengths)
    return RNNSequence(bool(reverse), nonlinearity)(xg, w_hh, h0, *extra)
