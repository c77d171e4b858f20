"""The whole all-MiniLM-L6-v2 through the accelerator: sentence embeddings (issue 20).

Host side of ``npugen embed``: the float reference model in NumPy from the shipped safetensors,
calibration of the int8 pipeline's activation ranges on sentences that are not reported on,
the quantized model (TFLite per-channel weights, :mod:`npugen.sim.realdata`'s rules), and the
runners that send every GEMM job and attention head of the pipeline
(:func:`npugen.sim.golden.minilm.encode`) through the simulated RTL.

- :func:`float_embed`: the float model, NumPy float64: BERT embeddings + LayerNorm, six layers
  of self-attention and GELU feed-forward, mean pooling over the tokens, L2 normalization (what
  ``SentenceTransformer("all-MiniLM-L6-v2").encode(..., normalize_embeddings=True)`` computes).
- :func:`calibrate`, :func:`quantize_model`: per-tensor int8 ranges from the float model on
  ``sim/data/calibration.txt``; weights per output channel (or per tensor, to measure its cost).
- :func:`golden_embed`: the integer pipeline's golden model.
- :func:`embed`: the same through the RTL (:mod:`npugen.sim.run`), bit-exact with the golden.

See docs/realdata.md ("The whole model").
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

from npugen.hw.errors import InputError
from npugen.sim import realdata as rd
from npugen.sim.driver import GemmJob
from npugen.sim.golden import minilm as gm

__all__ = [
    "LAYERS", "HEADS", "D_HEAD", "DATA_DIR", "SENTENCES_PATH", "CALIBRATION_PATH",
    "read_sentences", "layer_tensors", "embeddings_input", "float_forward", "float_embed",
    "pool", "calibrate", "quantize_model", "default_model", "golden_embed", "cosines",
    "spearman", "pairwise_spearman", "rtl_runners", "embed", "demo", "minilm_config",
    "layer_jobs", "roofline", "serving",
]

#: Encoder layers of all-MiniLM-L6-v2 (``config.json``: ``num_hidden_layers``).
LAYERS = 6
HEADS = rd.HEADS
D_HEAD = rd.HIDDEN // rd.HEADS

DATA_DIR = Path(__file__).resolve().parent / "data"
#: The reported sentences (never calibrated on).
SENTENCES_PATH = DATA_DIR / "sentences.txt"
#: The calibration sentences.
CALIBRATION_PATH = DATA_DIR / "calibration.txt"

_MODULES = {  # linear name -> safetensors module under encoder.layer.<l>.
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "o": "attention.output.dense", "f1": "intermediate.dense", "f2": "output.dense",
}
_NORMS = {"ln1": "attention.output.LayerNorm", "ln2": "output.LayerNorm"}


def read_sentences(path) -> list[str]:
    """Non-empty lines of a text file that do not start with ``#``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a text file") from None
    out = [s.strip() for s in text.splitlines()]
    return [s for s in out if s and not s.startswith("#")]


@functools.lru_cache(maxsize=None)
def layer_tensors(layer: int) -> dict:
    """Float32 weights of encoder layer ``layer``: ``{name: (W (out, in), b)}`` for the six
    linears and ``{ln1, ln2: (gamma, beta)}`` (read-only, cached)."""
    names = []
    for mod in (*_MODULES.values(), *_NORMS.values()):
        kinds = ("weight", "bias")
        names += [f"encoder.layer.{layer}.{mod}.{k}" for k in kinds]
    t = rd.load_tensors(names)
    out = {}
    for key, mod in {**_MODULES, **_NORMS}.items():
        p = f"encoder.layer.{layer}.{mod}."
        out[key] = (t[p + "weight"], t[p + "bias"])
    return out


@functools.lru_cache(maxsize=None)
def _layer_tensors64(layer: int) -> dict:
    """The linears of :func:`layer_tensors` as float64 ``(W^T, b)``, for the float model."""
    return {name: (np.ascontiguousarray(w.astype(np.float64).T), b.astype(np.float64))
            for name, (w, b) in layer_tensors(layer).items() if name in _MODULES}


def embeddings_input(sentence: str) -> tuple[list[str], np.ndarray]:
    """Tokens and the float32 ``(T, 384)`` embedding LayerNorm output
    (:func:`npugen.sim.realdata.layer0_input`; the tokenizer without padding)."""
    return rd.layer0_input(sentence)


def _softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def float_forward(x0, *, layers: int = LAYERS, capture=None) -> np.ndarray:
    """The float encoder on one sentence, float64 (BERT post-LayerNorm layers).

    Parameters
    ----------
    x0 : array_like, shape (T, 384)
        The embedding LayerNorm output.
    layers : int
        How many layers to run.
    capture : dict, optional
        Receives, per layer ``l``, the float tensors at the int8 pipeline's quantization points:
        ``(l, "x")`` layer input, ``"q"``, ``"k"``, ``"v"``, ``"s"`` (scores after 1/sqrt(d),
        ``(H, T, T)``), ``"att"`` (context), ``"o"``, ``"h1"``, ``"f1"``, ``"g"``, ``"f2"``.

    Returns
    -------
    numpy.ndarray
        float64 ``(T, 384)``: the last hidden state.
    """
    x = np.asarray(x0, dtype=np.float64)
    t = x.shape[0]
    for li in range(layers):
        w = layer_tensors(li)
        w64 = _layer_tensors64(li)

        def lin(a, name):
            wt_t, b = w64[name]
            return a @ wt_t + b

        q, k, v = lin(x, "q"), lin(x, "k"), lin(x, "v")
        qh, kh, vh = (a.reshape(t, HEADS, D_HEAD).transpose(1, 0, 2) for a in (q, k, v))
        s = qh @ kh.transpose(0, 2, 1) / np.sqrt(D_HEAD)
        ctx = (_softmax(s) @ vh).transpose(1, 0, 2).reshape(t, -1)
        o = lin(ctx, "o")
        h1 = gm.layer_norm(o + x, *w["ln1"])
        f1 = lin(h1, "f1")
        g = gm.gelu(f1)
        f2 = lin(g, "f2")
        if capture is not None:
            for key, val in (("x", x), ("q", q), ("k", k), ("v", v), ("s", s), ("att", ctx),
                             ("o", o), ("h1", h1), ("f1", f1), ("g", g), ("f2", f2)):
                capture[(li, key)] = val
        x = gm.layer_norm(f2 + h1, *w["ln2"])
    return x


def pool(h) -> np.ndarray:
    """Mean pooling over the tokens, then L2 normalization: the sentence embedding."""
    return gm.l2_normalize(gm.mean_pool(h))


def float_embed(sentences) -> np.ndarray:
    """Float-model embeddings, float64 ``(n, 384)``, L2-normalized."""
    return np.stack([pool(float_forward(embeddings_input(s)[1])) for s in sentences])


# --------------------------------------------------------------------------------------------
# calibration and quantization


def calibrate(sentences) -> dict:
    """Activation ranges of the float model over ``sentences``.

    Returns
    -------
    dict
        ``{(layer, point): (min, max)}`` per channel (float64 arrays) for the points of
        :func:`float_forward`, and
        ``{(layer, "s"): per-head max |score|}`` (float64 ``(H,)``).
    """
    ranges: dict = {}
    for s in sentences:
        cap: dict = {}
        float_forward(embeddings_input(s)[1], capture=cap)
        for key, val in cap.items():
            if key[1] == "s":
                m = np.abs(val).max(axis=(1, 2))
                ranges[key] = m if key not in ranges else np.maximum(ranges[key], m)
                continue
            lo, hi = val.min(axis=0), val.max(axis=0)          # per channel
            if key in ranges:
                lo, hi = np.minimum(lo, ranges[key][0]), np.maximum(hi, ranges[key][1])
            ranges[key] = (lo, hi)
    return ranges


def _per_tensor_weights(w):
    """Symmetric per-tensor int8 weights: one scale ``max|W| / 127`` for every channel."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.float32(np.abs(w).max())
    scale = rd.symmetric_params(amax)
    q = rd.round_half_away(w * (np.float32(127) / amax))
    return (np.clip(q, -127, 127).astype(np.int8),
            np.full(w.shape[0], scale, dtype=np.float32))


def quantize_model(ranges: dict, *, weights: str = "channel", gelu: str = "float",
                   smooth: float | None = None, raw_residual: bool = True,
                   layers: int = LAYERS) -> dict:
    """The int8 model of :func:`npugen.sim.golden.minilm.encode` from calibrated ranges.

    - GEMM inputs (the LayerNorm outputs ``x``, ``h1``; the GELU output ``g``; the attention
      context): per-tensor asymmetric int8 (TFLite's rule,
      :func:`npugen.sim.realdata.asymmetric_params`), from the calibrated range.
    - ``smooth``: SmoothQuant's migration strength alpha (Xiao et al., "SmoothQuant", ICML
      2023): the inputs of Q/K/V, FFN1 and FFN2 are divided per input channel by
      ``s_c = max|x_c|^alpha / max|W[:, c]|^(1 - alpha)`` and the weights' columns multiplied
      by it, an identity in real arithmetic that moves BERT's outlier channels from the
      per-tensor activations into the per-channel weights. None: no smoothing.
    - Weights symmetric per output channel (``weights="channel"``) or per tensor
      (``"tensor"``); biases int32 at ``S_a S_w[n]``.
    - Q and K outputs symmetric per tensor (the attention unit's operands), V asymmetric; the
      score scale per head from the calibrated ``max |q·k| / sqrt(d)`` (``S_s = max / 127``);
      the context one asymmetric scale per layer, shared by the heads.
    - FFN1 returns raw int32 accumulators (the GELU on the host takes them); with
      ``raw_residual`` (default) so do the attention output projection and FFN2, whose outputs
      only feed the host's residual add; otherwise they are requantized to int8 (asymmetric).
    """
    if weights not in ("channel", "tensor"):
        raise InputError(f"weights must be 'channel' or 'tensor', not {weights!r}")
    if gelu not in ("float", "ibert"):
        raise InputError(f"gelu must be 'float' or 'ibert', not {gelu!r}")
    qw = rd.quantize_weights_per_channel if weights == "channel" else _per_tensor_weights

    def lohi(key, div=None):
        lo, hi = ranges[key]
        if div is not None:
            lo, hi = lo / div, hi / div
        return float(np.min(lo)), float(np.max(hi))

    def asym(key, div=None):
        s, z = rd.asymmetric_params(*lohi(key, div))
        return {"scale": np.float32(s), "zp": int(z)}

    def smoothing(key, mats):
        if smooth is None:
            return None
        lo, hi = ranges[key]
        amax_x = np.maximum(np.abs(lo), np.abs(hi))
        amax_w = np.max([np.abs(m).max(axis=0) for m in mats], axis=0)
        s = amax_x ** smooth / np.maximum(amax_w, 1e-8) ** (1 - smooth)
        return np.where(s > 0, s, 1.0).astype(np.float32)

    out_layers = []
    for li in range(layers):
        w = layer_tensors(li)
        s_x = smoothing((li, "x"), [w[n][0] for n in ("q", "k", "v")])
        s_h1 = smoothing((li, "h1"), [w["f1"][0]])
        s_g = smoothing((li, "g"), [w["f2"][0]])
        L: dict = {"x": asym((li, "x"), s_x), "h1": asym((li, "h1"), s_h1),
                   "g": asym((li, "g"), s_g)}
        inputs = {"q": (L["x"], s_x), "k": (L["x"], s_x), "v": (L["x"], s_x),
                  "o": (asym((li, "att")), None), "f1": (L["h1"], s_h1), "f2": (L["g"], s_g)}
        for name in ("q", "k", "v", "o", "f1", "f2"):
            wt, b = w[name]
            a, sm = inputs[name]
            if sm is not None:
                wt = (wt.astype(np.float64) * sm.astype(np.float64)).astype(np.float32)
            w_q, s_w = qw(wt)
            lin = {"b": np.ascontiguousarray(w_q.T), "bias": rd.quantize_bias(
                b, a["scale"], s_w), "zp_a": a["zp"], "scale_a": a["scale"],
                "scale_b": s_w, "smooth": sm}
            if name == "f1" or (raw_residual and name in ("o", "f2")):
                lin["raw"] = True
            elif name in ("q", "k"):
                lin["scale_out"], lin["zp_out"] = rd.symmetric_params(
                    max(abs(v) for v in lohi((li, name)))), 0
            else:
                s_out, z_out = rd.asymmetric_params(*lohi((li, name)))
                lin["scale_out"], lin["zp_out"] = np.float32(s_out), int(z_out)
            L[name] = lin
        att = asym((li, "att"))
        L["att"] = {"scale_s": (ranges[(li, "s")] / 127.0).astype(np.float64),
                    "scale_out": att["scale"], "zp_out": att["zp"]}
        L["ln1"] = dict(zip(("gamma", "beta"), w["ln1"]))
        L["ln2"] = dict(zip(("gamma", "beta"), w["ln2"]))
        out_layers.append(L)
    return {"heads": HEADS, "eps": rd.LAYER_NORM_EPS, "gelu": gelu, "weights": weights,
            "smooth": smooth, "raw_residual": raw_residual, "layers": out_layers}


@functools.lru_cache(maxsize=None)
def _default_ranges() -> dict:
    return calibrate(read_sentences(CALIBRATION_PATH))


def default_model(**recipe) -> dict:
    """:func:`quantize_model` calibrated on ``sim/data/calibration.txt`` (cached); keyword
    arguments choose the recipe (``weights``, ``gelu``, ``smooth``, ``raw_residual``)."""
    return _default_model(tuple(sorted(recipe.items())))


@functools.lru_cache(maxsize=None)
def _default_model(recipe):
    return quantize_model(_default_ranges(), **dict(recipe))


def golden_embed(sentences, model=None, *, layers=None, trace=None) -> np.ndarray:
    """Sentence embeddings from the integer pipeline's golden model, float64 ``(n, 384)``
    (with ``layers``: the pooled, normalized hidden state after that many layers)."""
    model = default_model() if model is None else model
    x0 = [embeddings_input(s)[1] for s in sentences]
    h = gm.encode(x0, model, layers=layers, trace=trace)
    return np.stack([pool(x) for x in h])


# --------------------------------------------------------------------------------------------
# accuracy


def cosines(a, b) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, D)`` arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _ranks(x):
    """Ranks 1..n, ties given their average rank (Spearman's convention)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        sel = x == v
        if sel.sum() > 1:
            ranks[sel] = ranks[sel].mean()
    return ranks


def spearman(x, y) -> float:
    """Spearman's rank correlation: Pearson's correlation of the ranks."""
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    return float((rx @ ry) / np.sqrt((rx @ rx) * (ry @ ry)))


def pairwise_spearman(e, ref) -> float:
    """Spearman correlation of the pairwise cosine similarities of two sets of embeddings
    (the ``n (n - 1) / 2`` sentence pairs)."""
    e, ref = np.asarray(e, np.float64), np.asarray(ref, np.float64)
    iu = np.triu_indices(len(e), k=1)
    return spearman((gm.l2_normalize(e) @ gm.l2_normalize(e).T)[iu],
                    (gm.l2_normalize(ref) @ gm.l2_normalize(ref).T)[iu])


# --------------------------------------------------------------------------------------------
# through the RTL


_GEMM_STEPS = ("qkv", "o", "f1", "f2")

#: The steps of a layer, in the order of :func:`npugen.sim.golden.minilm.encode`.
STEPS = ("qkv", "attention", "o", "f1", "f2")


def _golden_runners(cfg):
    """The golden pipeline's GEMM and attention runners with the design's rounding and OSI8
    parameters."""
    o8 = cfg.osi8

    def gemm(js):
        return gm.golden_gemm_runner(js, rounding=cfg.rounding)

    def attention(calls):
        return gm.golden_attention_runner(calls, F=o8.F, B=o8.B, G=o8.G, rounding=cfg.rounding)

    return gemm, attention


def rtl_runners(*, config, sim: str = "verilator", build_dir=None, stats=None, progress=None,
                steps=STEPS):
    """GEMM and attention runners for :func:`npugen.sim.golden.minilm.encode` that run on the
    simulated RTL by stream replay (:mod:`npugen.sim.replay`: the design's top, GEMM engine and
    attention unit together, compiled once): every call of the GEMM runner is one replay of
    the jobs of one step back to back (each job holding every sentence's tokens as rows), every
    call of the attention runner one replay of every sentence's 12 heads back to back (each
    LUT slot loaded once per replay: the first sentence's heads load it, the others reuse it).

    ``stats`` (a list) receives per job ``{"kind", "layer", "step", "sentence" (None for a
    GEMM job, which holds every sentence), "cycles", "macs", "utilization"}`` (GEMM jobs also
    ``m`` and ``model_cycles``): the kind is ``"gemm"`` or ``"attention"``, the step ``"qkv"``,
    ``"attention"``, ``"o"``, ``"f1"`` or ``"f2"`` (the order of
    :func:`npugen.sim.golden.minilm.encode`: four GEMM steps and one attention step per layer).
    ``progress`` is called with a short description after each replay. ``steps``: the steps
    (:data:`STEPS`) that run on the RTL; the others run on the golden runners (no statistics).

    Raises
    ------
    npugen.sim.replay.ReplayError
        When a replay fails (an error status, a stall, malformed output).
    """
    from npugen.sim import perfmodel, replay
    from npugen.sim import run as simrun

    stats = [] if stats is None else stats
    calls = {"gemm": 0, "attention": 0}
    gemm_gold, attention_gold = _golden_runners(config)

    def gemm_runner(jobs):
        i = calls["gemm"]
        calls["gemm"] += 1
        layer, step = divmod(i, len(_GEMM_STEPS))
        if _GEMM_STEPS[step] not in steps:
            return gemm_gold(jobs)
        jobs = [j if isinstance(j, GemmJob) else simrun.make_job(**j) for j in jobs]
        res = replay.gemm_jobs(jobs, config, sim=sim, build_dir=build_dir)
        for j, (c, st) in zip(jobs, res):
            m, k, n = j.shape
            cyc = int(st["cycles"])
            stats.append({"kind": "gemm", "layer": layer, "step": _GEMM_STEPS[step],
                          "sentence": None, "m": int(m), "cycles": cyc,
                          "model_cycles": perfmodel.gemm_cycles(config, m, k, n,
                                                                requant=j.requant),
                          "macs": int(m * k * n),
                          "utilization": m * k * n / (cyc * config.rows * config.cols)})
        if progress:
            progress(f"layer {layer} {_GEMM_STEPS[step]}: {len(jobs)} GEMM job(s)")
        return [np.asarray(c) for c, _ in res]

    def attention_runner(att_calls):
        layer = calls["attention"]
        calls["attention"] += 1
        if "attention" not in steps:
            return attention_gold(att_calls)
        loaded: dict = {}
        plans = []
        for c in att_calls:
            c = dict(c)
            q, k, v = c.pop("q"), c.pop("k"), c.pop("v")
            _, jobs, _ = simrun.plan_attention(q, k, v, **c, config=config, loaded=loaded,
                                               tag0=sum(len(p) for p in plans))
            plans.append(jobs)
        res = replay.attention_jobs([j for p in plans for j in p], config, sim=sim,
                                    build_dir=build_dir)
        outs, at = [], 0
        for n, jobs in enumerate(plans):
            mine = res[at:at + len(jobs)]
            at += len(jobs)
            h = len(jobs)
            t, _, d = jobs[0].shape
            cyc = sum(int(st["cycles"]) for _, st in mine)
            stats.append({"kind": "attention", "layer": layer, "step": "attention",
                          "sentence": n, "cycles": cyc, "macs": int(2 * h * t * t * d),
                          "utilization": h * perfmodel.attention_ideal_cycles(config, t, t)
                          / cyc})
            outs.append(np.stack([o for o, _ in mine]).astype(np.int8))
        if progress:
            progress(f"layer {layer} attention: {len(att_calls)} sentence(s) x "
                     f"{len(plans[0]) if plans else 0} heads")
        return outs

    return gemm_runner, attention_runner


def embed(sentences, *, config=None, sim: str = "verilator", build_dir=None, layers=None,
          model=None, check: bool = True, progress=None,
          steps=STEPS) -> tuple[np.ndarray, dict]:
    """Sentence embeddings computed through the simulated RTL.

    Every GEMM job and attention head of the integer pipeline runs on the generated design
    (:func:`rtl_runners`); the host does the rest (:mod:`npugen.sim.golden.minilm`).

    Parameters
    ----------
    sentences : list of str
        The input texts.
    config : hw.config.GemmConfig, path-like or None
        The design; it needs an ``[attention]`` section with ``d = 32`` (``configs/minilm.toml``).
        None: ``configs/minilm.toml``'s parameters (:func:`minilm_config`).
    sim : {"verilator", "icarus"}
    build_dir : path-like or None
    layers : int, optional
        Run only the first ``layers`` layers (a slice, for tests).
    model : dict, optional
        The quantized model; default :func:`default_model`.
    check : bool
        Also run the golden pipeline and report bit-exactness of every step.
    progress : callable, optional
        Called with a line of text after each simulation.
    steps : sequence of str
        The steps of each layer (:data:`STEPS`) that run on the RTL; the others run on the
        golden runners and count no cycles (a slice, for the slower simulator: Icarus runs the
        16 × 16 design at a few hundred cycles a second).

    Returns
    -------
    (numpy.ndarray, dict)
        float32 ``(n, 384)`` L2-normalized embeddings, and a report: ``tokens`` (per
        sentence), ``cosine`` (per sentence, against the float model run for the same layers),
        ``cycles`` (per sentence: GEMM + attention; a sentence is given the share of each
        batched GEMM job's cycles of its share of the rows), ``gemm_cycles``,
        ``attention_cycles``, ``layer_cycles`` (per layer, per step, all sentences),
        ``spearman`` (of the pairwise cosine similarities against the float model's, with 3
        sentences or more; else None), ``jobs`` (the per-job statistics of
        :func:`rtl_runners`), ``bit_exact`` (bool, or None when not checked),
        ``layer_bit_exact`` (per layer: every job and head of the layer equals the golden
        pipeline's; None when not checked), ``steps`` (those on the RTL),
        ``wall_s`` (seconds spent in the RTL run), ``layers``, ``config``, ``sim``.
    """
    from npugen.sim.run import _config

    sentences = list(sentences)
    if not sentences:
        raise InputError("no sentence to embed")
    cfg = minilm_config() if config is None else _config(config)
    att = getattr(cfg, "attention", None)
    if att is None or att.d != D_HEAD:
        raise InputError(f"design {cfg.name!r} needs an [attention] section with d = {D_HEAD} "
                         f"(configs/minilm.toml has one)")
    bad = [s for s in steps if s not in STEPS]
    if bad or not steps:
        raise InputError(f"steps: {bad or list(steps)} is not allowed (one or more of "
                         f"{', '.join(STEPS)})")
    model = default_model() if model is None else model
    toks, x0 = zip(*(embeddings_input(s) for s in sentences))
    jobs: list = []
    gemm_runner, attention_runner = rtl_runners(config=cfg, sim=sim, build_dir=build_dir,
                                                stats=jobs, progress=progress, steps=steps)
    trace: dict = {}
    t0 = time.monotonic()
    h = gm.encode(list(x0), model, layers=layers, gemm_runner=gemm_runner,
                  attention_runner=attention_runner, trace=trace,
                  rounding=cfg.rounding)
    wall = time.monotonic() - t0
    e = np.stack([pool(x) for x in h])
    exact = layer_exact = None
    if check:
        gtrace: dict = {}
        gemm_gold, att_gold = _golden_runners(cfg)
        hg = gm.encode(list(x0), model, layers=layers, gemm_runner=gemm_gold,
                       attention_runner=att_gold, trace=gtrace, rounding=cfg.rounding)
        same = {k: all(np.array_equal(np.asarray(a, np.int64), np.asarray(b, np.int64))
                       for a, b in zip(trace[k], gtrace[k])) for k in gtrace}
        layer_exact = [all(v for k, v in same.items() if k.startswith(f"L{li}."))
                       for li in range(LAYERS if layers is None else int(layers))]
        exact = all(same.values()) and all(np.array_equal(a, b) for a, b in zip(h, hg))
    n_layers = LAYERS if layers is None else int(layers)
    ref = np.stack([pool(float_forward(x, layers=n_layers)) for x in x0])
    n_tok = [len(t) for t in toks]
    gemm_total = sum(j["cycles"] for j in jobs if j["kind"] == "gemm")
    report = {
        "tokens": [list(t) for t in toks],
        "cosine": cosines(e, ref).tolist(),
        # GEMM jobs hold every sentence's tokens: each sentence is given its share of rows
        "gemm_cycles": [round(gemm_total * t / sum(n_tok)) for t in n_tok],
        "attention_cycles": [sum(j["cycles"] for j in jobs if j["kind"] == "attention"
                                 and j["sentence"] == i) for i in range(len(sentences))],
        "spearman": pairwise_spearman(e, ref) if len(sentences) >= 3 else None,
        "layers": n_layers,
        "jobs": jobs,
        "bit_exact": exact,
        "layer_bit_exact": layer_exact,
        "steps": list(steps),
        "wall_s": wall,
        "config": cfg.name,
        "sim": sim,
    }
    report["cycles"] = [g + a for g, a in zip(report["gemm_cycles"],
                                              report["attention_cycles"])]
    report["layer_cycles"] = [
        {step: sum(j["cycles"] for j in jobs if j["layer"] == li and j["step"] == step)
         for step in ("qkv", "attention", "o", "f1", "f2")} for li in range(n_layers)]
    return e.astype(np.float32), report


#: The shipped configuration for the whole model.
CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "minilm.toml"


def minilm_config():
    """``configs/minilm.toml`` when present (a checkout), else the embedded default with an
    ``[attention]`` section for d = 32, 12 heads, named ``minilm``."""
    import dataclasses

    from npugen.hw.config import AttentionConfig, load_config
    if CONFIG_PATH.is_file():
        return load_config(CONFIG_PATH)
    return dataclasses.replace(load_config(), name="minilm",
                               attention=AttentionConfig(d=D_HEAD, heads=HEADS))


# --------------------------------------------------------------------------------------------
# npugen demo


def demo(cfg=None, sim: str = "verilator", sentence: str = rd.DEFAULT_SENTENCE, console=None,
         *, progress=True, build_dir="build") -> int:
    """All-MiniLM-L6-v2 on one sentence through the generated RTL: ``npugen demo``.

    Generates the design's Verilog into ``<build_dir>/<name>/`` (:func:`npugen.hw.emit.generate`),
    runs :func:`embed` on the sentence (every GEMM job and attention head of the six layers on
    the simulated RTL by stream replay, checked against the golden pipeline), and prints the
    sentence and its tokens, a table per layer (cycles of each step, GEMM utilization,
    bit-exact), the embedding's cosine to the float model, and the serving figures at the
    design's ``clock_mhz``.

    Parameters
    ----------
    cfg : hw.config.GemmConfig, optional
        The design, with an ``[attention]`` section d = 32; default :func:`minilm_config`.
    sim : {"verilator", "icarus"}
    sentence : str
    console : rich.console.Console, optional
        Where to print; default :func:`npugen.sim.realdata.make_console` on standard output.
    progress : bool or rich.console.Console
        Progress of the long steps on standard error (True), on this console, or not (False).
    build_dir : path-like
        Folder of the generated design and of the simulator builds.

    Returns
    -------
    int
        0 when every layer is bit-exact with the golden pipeline; 1 when one is not or the model
        package is missing (a one-line message says which).

    Raises
    ------
    InputError
        For a design without an ``[attention]`` section of d = 32.
    """
    from rich.table import Table

    from npugen.hw.emit import generate
    from npugen.sim.design import build_npu

    console = console if console is not None else rd.make_console()
    err = (rd.make_console(stderr=True) if progress is True
           else None if progress is False else progress)
    cfg = minilm_config() if cfg is None else cfg
    att = getattr(cfg, "attention", None)
    if att is None or att.d != D_HEAD:
        raise InputError(f"design {cfg.name!r} needs an [attention] section with d = {D_HEAD} "
                         f"(configs/minilm.toml has one)")
    try:
        tokens, _ = embeddings_input(sentence)
    except rd.ModelUnavailableError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return 1
    from npugen.sim import replay

    with rd._progress(err, f"generating {cfg.name}", 1) as advance:
        generate(cfg, build_dir, top=build_npu)
        advance()
    with rd._progress(err, f"compiling {cfg.name} for {sim} (once per design)", 1) as advance:
        replay.build(cfg, sim, build_dir)
        advance()
    t0 = time.monotonic()
    with rd._progress(err, f"all-MiniLM-L6-v2 on {cfg.name} ({sim})", 5 * LAYERS) as advance:
        e, rep = embed([sentence], config=cfg, sim=sim, build_dir=build_dir,
                       progress=lambda line: advance())
    wall = time.monotonic() - t0
    put = lambda text: console.print(text, markup=False, highlight=False)   # noqa: E731
    put(f"sentence: {sentence}")
    put(f"tokens:   {len(tokens)}  ({' '.join(tokens)})")
    put(f"design:   {cfg.name}: {cfg.rows}x{cfg.cols} {cfg.dataflow} GEMM engine and OSI8 "
        f"attention unit (d = {att.d}, q_block {att.q_block}); Verilog in "
        f"{Path(build_dir) / cfg.name}")
    table = Table(title=f"all-MiniLM-L6-v2, {len(tokens)} tokens, through the RTL ({sim}): "
                        f"cycles per step")
    for col in ("layer", "Q, K, V", "attention", "O", "FFN 1", "FFN 2", "total",
                "GEMM util-\nization", "bit-\nexact"):
        table.add_column(col, justify="right", no_wrap=True)
    peak = cfg.rows * cfg.cols
    for li, row in enumerate(rep["layer_cycles"]):
        gj = [j for j in rep["jobs"] if j["kind"] == "gemm" and j["layer"] == li]
        util = sum(j["macs"] for j in gj) / (peak * sum(j["cycles"] for j in gj))
        table.add_row(str(li), *(f"{row[k]:,}" for k in ("qkv", "attention", "o", "f1", "f2")),
                      f"{sum(row.values()):,}", f"{100 * util:.1f} %",
                      "yes" if rep["layer_bit_exact"][li] else "NO")
    total = sum(sum(r.values()) for r in rep["layer_cycles"])
    table.add_row("all", *(f"{sum(r[k] for r in rep['layer_cycles']):,}"
                           for k in ("qkv", "attention", "o", "f1", "f2")), f"{total:,}", "",
                  "yes" if rep["bit_exact"] else "NO")
    console.print(table)
    put(f"embedding: {e.shape[1]} floats, L2-normalized; cosine to the float model "
        f"{rep['cosine'][0]:.5f}")
    mhz = float(cfg.clock_mhz)
    put(f"serving:   {total:,} cycles for {len(tokens)} tokens = {total / mhz / 1e3:.3f} ms at "
        f"clock_mhz {mhz:g} ({len(tokens) * mhz * 1e6 / total:,.0f} tokens/s; clock_mhz is the "
        f"design's target clock: docs/area.md has the Fmax the asic flow estimates, unplaced)")
    put(f"run time:  {wall:.1f} s: {rep['wall_s']:.1f} s for the {5 * rep['layers']} replays "
        f"({sim}) and the host steps between them, the rest for the quantized model, the golden "
        f"pipeline's check and the float model")
    if not rep["bit_exact"]:
        put("error: RTL output differs from the golden pipeline")
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# roofline (cycle-exact model)


def layer_jobs(tokens: int) -> list[tuple[str, int, int, int, bool]]:
    """The GEMM jobs of one layer for ``tokens`` rows: ``(name, M, K, N, requant)`` (Q, K, V
    requantized to int8; O, FFN1, FFN2 raw int32, as :func:`quantize_model` sets them)."""
    t = int(tokens)
    return [("q", t, 384, 384, True), ("k", t, 384, 384, True), ("v", t, 384, 384, True),
            ("o", t, 384, 384, False), ("f1", t, 384, 1536, False),
            ("f2", t, 1536, 384, False)]


def roofline(cfg, tokens: int, bandwidth=None) -> list[dict]:
    """Roofline of one layer's GEMM jobs on a design, from the cycle-exact model.

    Per job: ``macs``; ``bytes``, the operands' and results' sizes (A ``M K``, B ``K N``, bias
    ``4 N``, C ``M N`` bytes for int8 or ``4 M N`` raw); ``intensity`` (MACs per byte);
    ``act_bytes`` and ``wgt_bytes``, what the input streams carry
    (:func:`npugen.sim.perfmodel.stream_beats` × beat width: a ws engine streams each row
    chunk of A once per column tile, and parameter blocks travel with the weights);
    ``model_cycles`` (:func:`npugen.sim.perfmodel.gemm_cycles`, the hardware as built, the
    sources always valid).

    With ``bandwidth`` (bytes per cycle on each input stream, one rate or ``(act, wgt)``;
    :func:`npugen.sim.perfmodel.stream_rates`): ``bw_cycles``, the exact model's cycles with
    both streams throttled to it (token-bucket sources, ``docs/perf.md``, "Stream bandwidth";
    checked against the RTL by tests/test_perfmodel.py), and ``bw_bound``, the ideal
    bandwidth bound ``max(act_bytes / B_act, wgt_bytes / B_wgt)``, a rate counted at most one
    beat's bytes (:func:`npugen.sim.perfmodel.stream_bound`); both None without.

    ``utilization`` is ``MACs / (R C cycles)`` with the throttled cycles when a bandwidth is
    given. ``bound``: ``"bandwidth"`` when ``bw_bound`` exceeds the as-built cycles (the
    bandwidth roof lies under the engine's); otherwise ``"array"`` when the MACs fill the array
    (``M K N / (R C)`` at least the ``K N / C`` weight-row beats) and ``"weight stream"`` when
    they do not (at ``M = 1`` a weight-stationary array uses each weight once: every cycle
    brings one weight row and does one row of MACs, a bound of ``1 / R``).
    """
    from npugen.sim import perfmodel

    peak = cfg.rows * cfg.cols
    rows = []
    for name, m, k, n, rq in layer_jobs(tokens):
        macs = m * k * n
        nbytes = m * k + k * n + 4 * n + m * n * (1 if rq else 4)
        act_beats, wgt_beats = perfmodel.stream_beats(cfg, m, k, n)
        cyc = perfmodel.gemm_cycles(cfg, m, k, n, requant=rq)
        if bandwidth is None:
            bw = bound_cyc = None
        else:
            bw = perfmodel.gemm_cycles(cfg, m, k, n, requant=rq, bandwidth=bandwidth)
            bound_cyc = perfmodel.stream_bound(cfg, m, k, n, bandwidth)
        weight_beats = k * n / cfg.cols         # one weight row of C bytes per beat
        as_built = "array" if macs / peak >= weight_beats else "weight stream"
        rows.append({"job": name, "m": m, "k": k, "n": n, "macs": macs, "bytes": nbytes,
                     "intensity": macs / nbytes, "act_bytes": act_beats * cfg.rows,
                     "wgt_bytes": wgt_beats * cfg.cols, "model_cycles": cyc,
                     "bw_cycles": bw, "bw_bound": bound_cyc, "weight_beats": weight_beats,
                     "utilization": macs / (peak * (cyc if bw is None else bw)),
                     "bound": as_built if bw is None or bound_cyc <= cyc else "bandwidth"})
    return rows


# --------------------------------------------------------------------------------------------
# serving figures (cycle-exact model)


def serving(sentences, cfg=None, model=None) -> dict:
    """Modelled cycles of the whole model on a design, per layer and step, for a batch.

    The GEMM steps from :func:`npugen.sim.perfmodel.gemm_cycles` (one job per linear holding
    every sentence's tokens, as :func:`embed` runs them), the attention of each sentence from
    :func:`npugen.sim.perfmodel.attention_cycles` with the tiles the golden pipeline's own int8
    scores need (the first sentence's heads load their LUTs, the others reuse them: one
    simulation per layer, as :func:`embed` runs them). Both models are
    cycle-exact with the RTL when jobs run back to back (``docs/perf.md``).

    Returns
    -------
    dict
        ``tokens`` (total rows), ``layers``: per layer ``{qkv, attention, o, f1, f2}`` cycles,
        ``total`` cycles, ``macs``, ``utilization`` (MACs over ``R C`` per cycle of the GEMM
        steps plus the attention unit's ``q_block d`` per cycle).
    """
    from npugen.sim import golden, perfmodel

    cfg = minilm_config() if cfg is None else cfg
    model = default_model() if model is None else model
    sentences = list(sentences)
    trace: dict = {}
    x0 = [embeddings_input(s)[1] for s in sentences]
    gm.encode(x0, model, trace=trace)
    m = sum(x.shape[0] for x in x0)
    layers = []
    macs = 0
    for li, L in enumerate(model["layers"]):
        row = {"qkv": 0, "attention": 0, "o": 0, "f1": 0, "f2": 0}
        for name, mm, k, n, rq in layer_jobs(m):
            step = "qkv" if name in ("q", "k", "v") else name
            row[step] += perfmodel.gemm_cycles(cfg, mm, k, n, requant=rq)
            macs += mm * k * n
        qkv = trace[f"L{li}.qkv"]
        for s in range(len(sentences)):
            q, k = (gm._split_heads(qkv[3 * s + i], HEADS) for i in (0, 1))
            t = q.shape[1]
            for h in range(HEADS):
                p = golden.attention_params(float(L["q"]["scale_out"]),
                                            float(L["k"]["scale_out"]),
                                            float(L["v"]["scale_out"]),
                                            float(L["att"]["scale_s"][h]),
                                            float(L["att"]["scale_out"]), D_HEAD,
                                            zp_v=int(L["v"]["zp_out"]),
                                            zp_o=int(L["att"]["zp_out"]))
                scores = golden.attention_scores(q[h], k[h], p, rounding=cfg.rounding)
                on = golden.attention_mask(t, t)
                needs = perfmodel.attention_tile_needs(scores, on, cfg.osi8.B,
                                                       cfg.attention.q_block)
                row["attention"] += perfmodel.attention_cycles(cfg, t, t, needs,
                                                               load_lut=s == 0)
                macs += 2 * t * t * D_HEAD
        layers.append(row)
    total = sum(sum(r.values()) for r in layers)
    return {"tokens": m, "layers": layers, "total": total, "macs": macs}
