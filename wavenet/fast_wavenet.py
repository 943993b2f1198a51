"""Compiled one-step WaveNet for sampling on CPU (fast-wavenet, Paine et al. 2016, arXiv:1611.09482).

`pack` reads the weights of a trained `WaveNet` once; `run` then advances
every stream by a block of steps inside numba. Each layer keeps its last
`reach` inputs in a ring buffer, so a new sample costs the same however many
came before. The math is the model's: the causal input convolution as table
look-ups, per layer the dilated convolution, `gated_activation`, the 1x1
residual and skip, then the head and inverse-CDF sampling as in
`sampling.inverse_cdf_sample`. Local conditioning arrives per block of steps as
every layer's projection of the block's frames (`LocalBlock`, computed with
torch); the kernel only interpolates it, two multiply-adds per gate input, as
`layers.FrameUpsampler` does. It runs in float32; logits match the model's
forward pass within 1e-4.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba import njit

# The kernel has no prange: it runs on its own thread pool (`run`) and asks numba only for a thread
# count. Asking launches numba's threading layer, whose default "omp" loads the system libgomp beside
# torch's own OpenMP runtime; with both in one process every later torch op runs 5-40x slower.
# "workqueue" is numba's own pool, with no OpenMP. Set before any numba pool starts; a layer the user
# picks with NUMBA_THREADING_LAYER is kept.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

# Eigen's float32 tanh: an odd 13/6 rational minimax fit, |error| < 4e-7. It is
# arithmetic only, so LLVM vectorises it (math.tanh is a scalar libm call).
TANH_CLAMP = np.float32(7.90531110763549805)  # tanh rounds to +-1 in float32 beyond this
A1, A3, A5, A7, A9, A11, A13 = (
    np.float32(a)
    for a in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
)
B0, B2, B4, B6 = (
    np.float32(b) for b in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
)
HALF = np.float32(0.5)
ZERO = np.float32(0.0)
# cache: compile once per machine, not once per process. error_model="numpy": float division
# without a ZeroDivisionError branch, which would stop LLVM vectorising the gate. fastmath
# "contract" fuses multiply-adds but never reorders sums, so results stay within float32 rounding.
JIT = dict(cache=True, error_model="numpy", fastmath={"contract"})


class Packed(NamedTuple):
    """A `WaveNet`'s weights laid out for the kernel: every matrix is (inputs, outputs), outputs contiguous.

    C = residual channels, S = skip channels, L = layers, k = kernel_width.
    """

    table: np.ndarray  # (k, levels, C): tap i of the input convolution as a look-up table
    in_bias: np.ndarray  # (C,)
    dilated: np.ndarray  # (L, k*C, 2C): input rows tap by tap, oldest tap first; filter then gate outputs
    cond: np.ndarray  # (streams, L, 2C): dilated bias plus the stream's speaker embedding
    out: np.ndarray  # (L, C, C + S): residual 1x1 then skip 1x1
    out_bias: np.ndarray  # (L, C + S)
    head1: np.ndarray  # (S, S)
    head1_bias: np.ndarray
    head2: np.ndarray  # (S, levels)
    head2_bias: np.ndarray
    reach: np.ndarray  # (L,) int64: (k - 1) * dilation, the ring size of each layer
    offset: np.ndarray  # (L,) int64: where each layer's ring starts in the state


class LocalBlock(NamedTuple):
    """Local conditioning for one block of steps: every layer's 1x1 projection of the frames it spans."""

    terms: np.ndarray  # (B, frames, L, 2C): layer l's projection of the block's frame f
    kernel: np.ndarray  # (2*hop,) the upsampler's kernel (layers.FrameUpsampler)
    position: int  # the first step's position counted from the block's first frame's centre

    @classmethod
    def of(cls, terms, upsampler, position):
        """From `wavenet_sampling.LocalTerms.frames`' terms (B, L, 2C, frames) and the model's upsampler."""
        return cls(_f32(terms.permute(0, 3, 1, 2)), _f32(upsampler.kernel), int(position))


NO_LOCAL = LocalBlock(np.zeros((0, 0, 0, 0), np.float32), np.zeros(2, np.float32), 0)


def _f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def pack(model, streams, speaker=None):
    """Weights of `model` (a WaveNet) for `streams` streams with speaker ids `speaker` ((streams,) long or None)."""
    L, C = len(model.layers), model.input_conv.out_channels
    S = model.layers[0].skip.out_channels
    out = np.zeros((L, C, C + S), np.float32)
    out_bias = np.zeros((L, C + S), np.float32)
    cond = np.empty((streams, L, 2 * C), np.float32)
    for i, layer in enumerate(model.layers):
        # the last layer has no residual output: a zero block keeps the kernel uniform
        if layer.residual is not None:
            out[i, :, :C] = _f32(layer.residual.weight[:, :, 0].t())
            out_bias[i, :C] = _f32(layer.residual.bias)
        out[i, :, C:] = _f32(layer.skip.weight[:, :, 0].t())
        out_bias[i, C:] = _f32(layer.skip.bias)
        bias = layer.dilated.bias
        cond[:, i] = _f32(bias if layer.speaker is None else bias + layer.speaker(speaker))
    # (2C, C, k) -> (k*C, 2C): row i*C + j is input channel j at tap i
    dilated = torch.stack([layer.dilated.weight.permute(2, 1, 0).flatten(0, 1) for layer in model.layers])
    reach = np.array([layer.dilated.reach for layer in model.layers], np.int64)
    _, head1, _, head2 = model.head
    return Packed(
        table=_f32(model.input_conv.weight.permute(2, 1, 0)),
        in_bias=_f32(model.input_conv.bias),
        dilated=_f32(dilated),
        cond=cond,
        out=out,
        out_bias=out_bias,
        head1=_f32(head1.weight[:, :, 0].t()),
        head1_bias=_f32(head1.bias),
        head2=_f32(head2.weight[:, :, 0].t()),
        head2_bias=_f32(head2.bias),
        reach=reach,
        offset=np.concatenate([[0], np.cumsum(reach)[:-1]]).astype(np.int64),
    )


def ring_state(buffers):
    """Per-layer past inputs [(B, C, reach)] -> ring state (B, sum of reaches, C) float32.

    The kernel keeps channels last so that one time step of one layer is a
    contiguous row; this is the one place the layout changes.
    """
    return np.ascontiguousarray(torch.cat(buffers, 2).transpose(1, 2).float().cpu().numpy())


@njit(**JIT)
def _tanh(x):
    x = TANH_CLAMP if x > TANH_CLAMP else (-TANH_CLAMP if x < -TANH_CLAMP else x)
    x2 = x * x
    p = ((((((A13 * x2 + A11) * x2 + A9) * x2 + A7) * x2 + A5) * x2 + A3) * x2 + A1) * x
    q = ((B6 * x2 + B4) * x2 + B2) * x2 + B0
    return p / q


@njit(**JIT)
def _matvec(acc, W, l, x):
    """acc (n_out,) += x (n_in,) @ W[l] for W (L, n_in, n_out).

    Four input rows per pass over acc: a quarter of the loads and stores of acc.
    """
    n_in, n_out = W.shape[1], W.shape[2]
    j = 0
    while j + 4 <= n_in:
        x0, x1, x2, x3 = x[j], x[j + 1], x[j + 2], x[j + 3]
        for o in range(n_out):
            acc[o] += (W[l, j, o] * x0 + W[l, j + 1, o] * x1) + (W[l, j + 2, o] * x2 + W[l, j + 3, o] * x3)
        j += 4
    while j < n_in:
        xj = x[j]
        for o in range(n_out):
            acc[o] += W[l, j, o] * xj
        j += 1


@njit(**JIT)
def _draw(logits, u, temperature, cdf):
    """`sampling.pick` for one stream: logits (levels,), u uniform in [0, 1); cdf (levels,) float64 scratch."""
    levels = logits.shape[0]
    if temperature == 0.0:
        return np.argmax(logits)
    # softmax of logits / temperature in float64, then the first level whose CDF exceeds u,
    # as sampling.inverse_cdf_sample computes it
    top = -np.inf
    for v in range(levels):
        top = max(top, np.float64(logits[v]) / temperature)
    total = 0.0
    for v in range(levels):
        cdf[v] = np.exp(np.float64(logits[v]) / temperature - top)
        total += cdf[v]
    acc = 0.0
    for v in range(levels):
        acc += cdf[v] / total
        if acc > u:
            return v
    return levels - 1


@njit(nogil=True, **JIT)
def _run_streams(lo, hi, t0, temperature, uniforms, forced, pending, codes_out, logits_out, history, rings, w, local):
    """Advance streams lo..hi-1 by one block of steps; see `run`."""
    k, _, C = w.table.shape
    L, K, G = w.dilated.shape
    O = w.out.shape[2]
    S, levels = O - C, w.head2.shape[1]
    head1, head2 = w.head1.reshape((1, S, S)), w.head2.reshape((1, S, levels))  # as _matvec's (L, in, out)
    n = hi - lo
    steps = max(uniforms.shape[0], forced.shape[1])
    h = np.empty((n, C), np.float32)  # each stream's input to the current layer
    skips = np.empty((n, S), np.float32)
    x = np.empty(K, np.float32)  # the dilated convolution's taps, oldest first
    pre = np.empty(G, np.float32)  # its output: filter half, then gate half
    z = np.empty(C, np.float32)
    res = np.empty(O, np.float32)  # residual then skip 1x1 outputs
    hid = np.empty(S, np.float32)
    logits = np.empty(levels, np.float32)
    cdf = np.empty(levels, np.float64)
    conditioned = local.terms.shape[1] > 0
    hop = local.kernel.shape[0] // 2
    for step in range(steps):
        t = t0 + step  # ring slots rotate with the global step count
        # local conditioning: the step lies between block frames f and f + 1 (layers.FrameUpsampler)
        f = (local.position + step) // hop
        r = local.position + step - f * hop
        w0, w1 = local.kernel[r + hop], local.kernel[r]
        for s in range(n):
            # causal input convolution over the last k codes: one table row per tap
            ss = lo + s
            for c in range(C):
                h[s, c] = ZERO
            for i in range(k - 1):
                for c in range(C):
                    h[s, c] += w.table[i, history[ss, i], c]
            code = pending[ss]
            for c in range(C):
                h[s, c] += w.table[k - 1, code, c]
                h[s, c] += w.in_bias[c]
            for i in range(k - 2):
                history[ss, i] = history[ss, i + 1]
            if k > 1:
                history[ss, k - 2] = code
            skips[s, :] = ZERO
        for l in range(L):
            # all of this chunk's streams go through layer l while its weights are in cache
            r, base = w.reach[l], w.offset[l]
            d = r // (k - 1) if k > 1 else 0
            for s in range(n):
                ss = lo + s
                # tap i sees time t - r + i*d; the ring's slot t mod r holds time t - r
                for i in range(k - 1):
                    slot = base + (t + i * d) % r
                    for j in range(C):
                        x[i * C + j] = rings[ss, slot, j]
                for j in range(C):
                    x[(k - 1) * C + j] = h[s, j]
                if r > 0:
                    # this step's input replaces the oldest, just read as tap 0
                    slot = base + t % r
                    for j in range(C):
                        rings[ss, slot, j] = h[s, j]
                for o in range(G):
                    pre[o] = w.cond[ss, l, o]
                if conditioned:
                    for o in range(G):
                        pre[o] += w0 * local.terms[ss, f, l, o] + w1 * local.terms[ss, f + 1, l, o]
                _matvec(pre, w.dilated, l, x)
                # gated_activation; sigmoid(b) = (1 + tanh(b / 2)) / 2 exactly
                for c in range(C):
                    z[c] = _tanh(pre[c]) * (HALF + HALF * _tanh(HALF * pre[C + c]))
                for o in range(O):
                    res[o] = w.out_bias[l, o]
                _matvec(res, w.out, l, z)
                for c in range(C):
                    h[s, c] += res[c]
                for o in range(S):
                    skips[s, o] += res[C + o]
        for s in range(n):
            ss = lo + s
            # head: relu, 1x1, relu, 1x1
            for o in range(S):
                hid[o] = w.head1_bias[o]
            for j in range(S):
                skips[s, j] = max(skips[s, j], ZERO)
            _matvec(hid, head1, 0, skips[s])
            for o in range(S):
                hid[o] = max(hid[o], ZERO)
            logits[:] = w.head2_bias
            _matvec(logits, head2, 0, hid)
            if forced.shape[1] > 0:
                logits_out[ss, step, :] = logits
                pending[ss] = forced[ss, step]
            else:
                code = _draw(logits, uniforms[step, ss], temperature, cdf)
                codes_out[ss, step] = code
                pending[ss] = code


def default_threads():
    """Threads `run` splits the streams over unless told: numba.get_num_threads(), which numba.set_num_threads sets."""
    return numba.get_num_threads()


def run(weights, rings, history, pending, t0, uniforms=None, temperature=1.0, forced=None, threads=None, local=None):
    """Advance B streams of a `pack`ed WaveNet by n steps, in place.

    rings (B, sum of reaches, C) and history (B, k-1) hold the streams' past;
    pending (B,) the code each feeds next; t0 counts the steps since `rings`
    was filled. Either sample, with uniforms (n, B) float64 -> codes (B, n),
    or teacher-force codes forced (B, n) -> logits (B, n, levels) float32.
    local: the n steps' `LocalBlock` for a locally conditioned model.
    Streams are split into `threads` groups run in parallel (default
    `default_threads()`).
    """
    B = len(pending)
    levels = weights.head2.shape[1]
    if forced is None:
        n = len(uniforms)
        forced = np.zeros((B, 0), np.int64)
        result = codes = np.empty((B, n), np.int64)
        logits = np.empty((B, 0, levels), np.float32)
    else:
        n = forced.shape[1]
        uniforms = np.zeros((0, B))
        codes = np.empty((B, 0), np.int64)
        result = logits = np.empty((B, n, levels), np.float32)
    threads = default_threads() if threads is None else threads
    bounds = np.linspace(0, B, min(threads, B) + 1).astype(int)
    local = NO_LOCAL if local is None else local
    args = (t0, float(temperature), uniforms, forced, pending, codes, logits, history, rings, weights, local)
    if len(bounds) == 2:
        _run_streams(0, B, *args)
    else:
        # the kernel releases the GIL; each thread owns a disjoint group of streams
        with ThreadPoolExecutor(len(bounds) - 1) as pool:
            for job in [pool.submit(_run_streams, lo, hi, *args) for lo, hi in zip(bounds[:-1], bounds[1:])]:
                job.result()
    return result
