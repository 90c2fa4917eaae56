"""``LBFGS``: limited-memory BFGS over the whole parameter vector, with an optional strong-Wolfe
line search (PyTorch's algorithm, after minFunc).

L-BFGS is not an elementwise rule, so it does not run per chunk like the other optimisers: it
works on the single flat vector that all parameters already live in (the one flat bucket of its
group, see ``lamina.optim.flat``). Moving along a direction, saving and restoring the parameters
for the line search are each one array operation on that vector.
"""
from __future__ import annotations

from ..autograd import enable_grad, no_grad
from ..tensor import Tensor, _wrap
from .flat import LayoutChanged, build_buckets
from .optimizer import Optimizer, _as_array


class LBFGS(Optimizer):
    """L-BFGS: each ``step(closure)`` runs up to ``max_iter`` iterations, each moving along the
    quasi-Newton direction built from the last ``history_size`` curvature pairs.

    ``closure`` must zero the gradients, compute the loss, call ``backward()`` and return the
    loss; it is called several times per step. ``line_search_fn`` is ``None`` (a fixed step of
    ``lr``; the first step scaled by 1/|g|₁) or ``"strong_wolfe"``. A step ends early when the
    largest gradient entry is at most ``tolerance_grad`` or the loss or parameters change by less
    than ``tolerance_change``; ``max_eval`` (default ``max_iter``·5/4) bounds closure calls.

    As in PyTorch: one param group only, all parameters on one device (here also of one dtype),
    and the state, kept under the first parameter, holds ``func_evals``, ``n_iter``, the last
    direction ``d`` and step ``t``, the history ``old_dirs``/``old_stps``/``ro``, ``H_diag``,
    ``prev_flat_grad``, ``prev_loss`` and ``al``. Memory: ``2·history_size + 3`` vectors of the
    parameters' size.
    """

    _flat_params = True

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                                      tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn))
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    def _check_group(self, group):
        self._require(group["lr"] >= 0, "learning rate", group["lr"], ">= 0")
        self._require(isinstance(group["max_iter"], int) and group["max_iter"] >= 1, "max_iter",
                      group["max_iter"], "an int >= 1")
        self._require(isinstance(group["max_eval"], int) and group["max_eval"] >= 1, "max_eval",
                      group["max_eval"], "an int >= 1")
        self._require(isinstance(group["history_size"], int) and group["history_size"] >= 1,
                      "history_size", group["history_size"], "an int >= 1")
        self._require(group["line_search_fn"] in (None, "strong_wolfe"), "line_search_fn",
                      group["line_search_fn"], "None or 'strong_wolfe'")

    def add_param_group(self, param_group):
        if self.param_groups:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")
        super().add_param_group(param_group)
        buckets = self._buckets[0]
        if len(buckets) > 1:
            kinds = ", ".join(f"{b.dtype} on {b.device}" for b in buckets)
            raise ValueError(f"LBFGS: all parameters must share one dtype and device, got {kinds}")

    # ------------------------------------------------------------ the flat vector
    def _bucket(self):
        params = self.param_groups[0]["params"]
        try:
            if self._buckets[0].stale(params):
                raise LayoutChanged
            for b in self._buckets[0]:
                b.sync(self._name)  # take in parameters whose .data was rebound
        except LayoutChanged:
            self._buckets[0] = build_buckets(self._check_params(params, "param group 0"))
            if len(self._buckets[0]) > 1:
                kinds = ", ".join(f"{b.dtype} on {b.device}" for b in self._buckets[0])
                raise ValueError(f"LBFGS: all parameters must share one dtype and device, got "
                                 f"{kinds}") from None
        return self._buckets[0][0]

    def _flat_grad(self, bucket):
        xp = bucket.xp
        pieces = []
        for i, p in enumerate(bucket.params):
            g = p.grad
            if g is None:
                pieces.append(xp.zeros(bucket.offsets[i + 1] - bucket.offsets[i], dtype=bucket.dtype))
            else:
                if g.shape != bucket.shapes[i]:
                    raise ValueError(f"LBFGS: parameter {i} has shape {bucket.shapes[i]} but its grad "
                                     f"has shape {g.shape}")
                pieces.append(g.array.reshape(-1))
        return xp.concatenate(pieces).astype(bucket.dtype, copy=False)

    def _move(self, bucket, t, d):
        """θ ← θ + t·d on the flat vector."""
        bucket.flat += t * d
        bucket.bump_versions()

    def _set(self, bucket, x):
        bucket.flat[...] = x
        bucket.bump_versions()

    # ------------------------------------------------------------ the step
    @no_grad()
    def step(self, closure):
        """Run one L-BFGS step (up to ``max_iter`` iterations); return the first loss."""
        if closure is None:
            raise ValueError("LBFGS.step: needs a closure that zeroes the gradients, computes the "
                             "loss, calls backward() and returns the loss")

        def evaluate():
            with enable_grad():
                return closure()

        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tolerance_grad, tolerance_change = group["tolerance_grad"], group["tolerance_change"]
        history_size = group["history_size"]
        bucket = self._bucket()
        xp = bucket.xp

        state = self._state[group["params"][0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        orig_loss = evaluate()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad(bucket)
        if float(xp.abs(flat_grad).max()) <= tolerance_grad:
            return orig_loss

        d = _raw(state.get("d"))
        t = _num(state.get("t"))
        old_dirs = [_raw(v) for v in state.get("old_dirs") or []]
        old_stps = [_raw(v) for v in state.get("old_stps") or []]
        ro = [_num(v) for v in state.get("ro") or []]
        h_diag = _num(state.get("H_diag"))
        prev_flat_grad = _raw(state.get("prev_flat_grad"))
        prev_loss = _num(state.get("prev_loss"))
        al = [_num(v) for v in state.get("al") or []]

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1

            # the direction: steepest descent first, then the two-loop recursion over the history
            if state["n_iter"] == 1:
                d = -flat_grad
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1.0
            else:
                y = flat_grad - prev_flat_grad
                s = d * t
                ys = float(xp.dot(y, s))
                if ys > 1e-10:  # keep only pairs of positive curvature
                    if len(old_dirs) == history_size:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)
                    h_diag = ys / float(xp.dot(y, y))
                if len(al) < history_size:
                    al = al + [None] * (history_size - len(al))
                q = -flat_grad
                for i in range(len(old_dirs) - 1, -1, -1):
                    al[i] = float(xp.dot(old_stps[i], q)) * ro[i]
                    q -= al[i] * old_dirs[i]
                d = q * h_diag
                for i in range(len(old_dirs)):
                    be_i = float(xp.dot(old_dirs[i], d)) * ro[i]
                    d += (al[i] - be_i) * old_stps[i]

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.copy()
            else:
                prev_flat_grad[...] = flat_grad
            prev_loss = loss

            # the step length
            if state["n_iter"] == 1:
                t = min(1.0, 1.0 / float(xp.abs(flat_grad).sum())) * lr
            else:
                t = lr
            gtd = float(xp.dot(flat_grad, d))
            if gtd > -tolerance_change:
                break  # not a descent direction any more

            ls_func_evals = 0
            if group["line_search_fn"] is not None:
                x_init = bucket.flat.copy()

                def directional(x, step_t, direction):
                    self._move(bucket, step_t, direction)
                    value = float(evaluate())
                    g = self._flat_grad(bucket)
                    self._set(bucket, x)
                    return value, g

                loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                    xp, directional, x_init, t, d, loss, flat_grad, gtd,
                    max_ls=max_eval - current_evals)
                self._move(bucket, t, d)
                opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
            else:
                self._move(bucket, t, d)
                opt_cond = False
                if n_iter != max_iter:
                    # the last iteration's loss would only serve the next step, which evaluates
                    # it anyway (and on new data in a stochastic setting)
                    loss = float(evaluate())
                    flat_grad = self._flat_grad(bucket)
                    opt_cond = float(xp.abs(flat_grad).max()) <= tolerance_grad
                    ls_func_evals = 1
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            if n_iter == max_iter or current_evals >= max_eval or opt_cond:
                break
            if float(xp.abs(d * t).max()) <= tolerance_change:
                break
            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = _tensor(d)
        state["t"] = t
        state["old_dirs"] = [_wrap(v) for v in old_dirs]
        state["old_stps"] = [_wrap(v) for v in old_stps]
        state["ro"] = ro
        state["H_diag"] = h_diag
        state["prev_flat_grad"] = _tensor(prev_flat_grad)
        state["prev_loss"] = prev_loss
        if al:
            state["al"] = al
        return orig_loss


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimiser of the cubic through (x1, f1) and (x2, f2) with slopes g1, g2, clamped to
    ``bounds`` (default: the interval); the midpoint when the cubic has no minimum."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square < 0:
        return (lo + hi) / 2.0
    d2 = d2_square ** 0.5
    if x1 <= x2:
        min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(min_pos, lo), hi)


def _strong_wolfe(xp, obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                  max_ls=25):
    """Line search for a step ``t`` along ``d`` meeting the strong Wolfe conditions
    (sufficient decrease ``c1``, curvature ``c2``): bracket, then zoom by cubic interpolation.
    Returns ``(loss, flat grad, t, evaluations)``."""
    d_norm = float(xp.abs(d).max())
    g = g.copy()
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = float(xp.dot(g_new, d))

    # bracketing: grow t until an interval is known to hold an acceptable point
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    bracket = bracket_f = bracket_g = bracket_gtd = None
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(xp.dot(g_new, d))
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until a point meets the conditions or the bracket is too small
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        # a trial too close to an end of the bracket twice in a row (or outside it) moves to 10%
        # of the bracket's width inside, so the bracket keeps shrinking
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = float(xp.dot(g_new, d))
        ls_iter += 1
        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new.copy(), gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos], bracket_gtd[high_pos] = bracket_g[low_pos], bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new.copy(), gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def _raw(value):
    """The array of a state vector (a lamina Tensor, or an array-like such as PyTorch's)."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value.array
    return _as_array(value)


def _num(value):
    """A state scalar as a float (PyTorch keeps some as 0-d tensors); ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        return float(value.item())
    return float(value)


def _tensor(a):
    return None if a is None else _wrap(a)
