"""The ``npugen`` command: a thin front end over the library.

Subcommands
-----------
``generate``  write the design folder (:func:`npugen.hw.emit.generate`) and lint its Verilog
``verify``    run the cocotb regression of a design (:func:`npugen.sim.runner.verify`)
``run gemm``  run one GEMM job through the simulated RTL (:func:`npugen.sim.run.gemm`)
``run softmax``  run rows of scores through the simulated softmax unit (:func:`npugen.sim.run.softmax`)
``run attention``  one head of int8 attention through the simulated attention unit
              (:func:`npugen.sim.run.attention`)
``demo``      all-MiniLM-L6-v2 on a sentence through the RTL (:func:`npugen.sim.minilm.demo`;
              ``--layer0``: :func:`npugen.sim.realdata.demo`)
``embed``     all-MiniLM-L6-v2 sentence embeddings through the RTL (:func:`npugen.sim.minilm.embed`)
``area``      area and timing with open tools (:func:`npugen.hw.synth.area`)
``power``     energy of a job from the gate-level netlist's switching
              (:func:`npugen.sim.power.measure`)
``sweep``     area over a grid of configurations (:func:`npugen.hw.synth.sweep.sweep`)
``perf``      modelled cycles of a GEMM job (:mod:`npugen.sim.perfmodel`); SCALE-Sim inputs with
              ``--scalesim``
``report``    one page per design: parameters, ports, QoR, modelled cycles (:mod:`npugen.sim.report`)

Exit codes: 0 success; 1 a check failed (lint, a test, a bit-exactness check) or a part of npugen
could not be imported; 2 a bad argument, configuration or input file, or a missing tool. Errors
are one line on standard error, ``npugen: error: ...``; nothing is written after one.

This is the one module that imports both :mod:`hw` and :mod:`sim`; it imports :mod:`sim` lazily,
inside the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any, Sequence

from ..hw import __version__
from ..hw.errors import NpugenError
from .design import build_npu
from ..hw.files import atomic_open
from ..hw.tools import SIMULATORS as _SIMS, check_simulator

__all__ = ["main", "build_parser"]


class CliError(NpugenError):
    """An error reported as one line, ``npugen: error: <message>``, with an exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(" ".join(str(message).split()))
        self.exit_code = code


# -- helpers ----------------------------------------------------------------------------------

def _load_config(path: str | None):
    from ..hw.config import load_config
    return load_config(path)


def _import_sim(name: str):
    """Import ``sim.<name>``, turning a missing or broken module into one line."""
    try:
        return importlib.import_module(f"npugen.sim.{name}")
    except ImportError as e:
        raise CliError(f"cannot import npugen.sim.{name}: {e}", code=1) from None


def _exit_code(value: Any) -> int:
    """A library function's result as an exit code (None means success)."""
    return 0 if value is None else int(value)


def _load_npy(path: str, option: str):
    import numpy as np
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CliError(f"{option}: {path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{option}: {path}: is a folder, not a .npy file") from None
    except (OSError, ValueError):
        raise CliError(f"{option}: {path}: not a NumPy .npy file (write one with numpy.save)") \
            from None
    if not isinstance(arr, np.ndarray):
        raise CliError(f"{option}: {path}: not a .npy array (an .npz archive?)")
    return arr


def _float32(text: str, option: str) -> float:
    """A scale given as text: parsed as float32, then promoted to a Python float (docs/numerics.md)."""
    import numpy as np
    try:
        value = np.float32(text)
    except (ValueError, OverflowError):
        raise CliError(f"{option}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise CliError(f"{option}: {text!r} is not a finite float32 number")
    return float(value)


def _scale(text: str, option: str):
    """A scale: a number, or a .npy file of per-channel values."""
    if text.endswith(".npy"):
        return _load_npy(text, option)
    return _float32(text, option)


def _save_npy_atomic(path: Path, array) -> None:
    """Write ``array`` to ``path`` so that ``path`` is either the old file or the whole new one."""
    import numpy as np
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _json_default(value: Any):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# -- subcommands ------------------------------------------------------------------------------

def cmd_config(args: argparse.Namespace) -> int:
    if args.config is None:
        from ..hw.config import default_toml
        print(default_toml(), end="")
    else:
        print(_load_config(args.config).to_toml(), end="")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ..hw.emit import LINT_WAIVERS, generate, lint
    from ..hw.tools import verilator_version

    cfg = _load_config(args.config)
    folder = generate(cfg, args.out, top=build_npu)
    print(folder)
    for path in sorted(folder.iterdir()):
        print(f"  {path.name}")
    if args.no_lint:
        return 0
    ok, messages = lint(folder / f"{cfg.name}.v")
    waived = ", ".join(w.removeprefix("-Wno-") for w in LINT_WAIVERS)
    if ok:
        print(f"lint: clean (Verilator {verilator_version()} -Wall; waived: {waived}, "
              f"UNUSEDSIGNAL on internal signals)")
        return 0
    print(f"lint: {len(messages)} message{'' if len(messages) == 1 else 's'} "
          f"(Verilator {verilator_version()} -Wall)")
    for line in messages:
        print(f"  {line}")
    return 1


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    check_simulator(args.sim)
    mutation_only = [f"--{o}" for o in ("top", "jobs", "fail-under", "out")
                     if getattr(args, o.replace("-", "_")) is not None]
    if args.mutants is None and mutation_only:
        raise CliError(f"{', '.join(mutation_only)}: only with --mutants")
    if args.mutants is not None and (args.waves or args.full):
        given = [o for o, on in (("--waves", args.waves), ("--full", args.full)) if on]
        raise CliError("--mutants runs the fast tests only, without waves: drop "
                       + " and ".join(given))
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"seed: {seed}", flush=True)
    if args.mutants is not None:
        return _verify_mutants(cfg, args, seed)
    runner = _import_sim("runner")
    return _exit_code(runner.verify(cfg, sim=args.sim, seed=seed, waves=args.waves,
                                    full=args.full))


def _verify_mutants(cfg, args: argparse.Namespace, seed: int) -> int:
    """``npugen verify --mutants N``: a mutation campaign per top (:mod:`npugen.sim.mutation`)."""
    mutation = _import_sim("mutation")
    from ..sim.design import TOPS
    if args.top is None:
        tops = [t for t in TOPS if t == "npu" or getattr(cfg, t, None) is not None]
    else:
        tops = [args.top]
    out = Path(args.out if args.out is not None else "build") / cfg.name
    command = " ".join(["npugen", "verify", *(["--config", args.config] if args.config else []),
                        "--sim", args.sim, "--seed", str(seed), "--mutants", str(args.mutants),
                        *(["--top", args.top] if args.top else []),
                        *(["--jobs", str(args.jobs)] if args.jobs else []),
                        *(["--fail-under", f"{args.fail_under:g}"]
                          if args.fail_under is not None else []),
                        *(["--out", args.out] if args.out is not None else [])])

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    reports = [mutation.campaign(cfg, mutants=args.mutants, seed=seed, top=top, sim=args.sim,
                                 jobs=args.jobs, progress=say) for top in tops]
    js, md = mutation.write_report(reports, out, command)
    for r in reports:
        print(f"{r['design']} ({r['top']}): {r['killed']} of {r['mutants']} mutants killed, "
              f"score {100 * r['score']:.1f} %, {r['survived']} survived")
    print(f"reports: {js} and {md.name}")
    n = sum(r["mutants"] for r in reports)
    score = 100 * sum(r["killed"] for r in reports) / n
    if args.fail_under is not None and score < args.fail_under:
        print(f"npugen: error: mutation score {score:.1f} % is under --fail-under "
              f"{args.fail_under:g} %", file=sys.stderr)
        return 1
    return 0


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage from 0 to 100")
    return value


def _also_needs(given: list[str], missing: list[str]) -> str:
    """``--a also needs --b and --c`` / ``--a and --b also need --c``."""
    def words(names):
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{words(given)} also {'needs' if len(given) == 1 else 'need'} {words(missing)}"


def cmd_run_gemm(args: argparse.Namespace) -> int:
    import numpy as np
    scales = {"--scale-a": args.scale_a, "--scale-b": args.scale_b,
              "--scale-out": args.scale_out}
    fixed = {"--multiplier": args.multiplier, "--shift": args.shift}
    given_scales = [k for k, v in scales.items() if v is not None]
    given_fixed = [k for k, v in fixed.items() if v is not None]
    if given_scales and given_fixed:
        raise CliError("give either --scale-a/--scale-b/--scale-out or --multiplier/--shift, "
                       "not both")
    if given_scales and len(given_scales) != len(scales):
        raise CliError(_also_needs(given_scales, [k for k in scales if k not in given_scales]))
    if given_fixed and len(given_fixed) != len(fixed):
        raise CliError(_also_needs(given_fixed, [k for k in fixed if k not in given_fixed]))

    out = _out_file(args.out)
    cfg = _load_config(args.config)
    a = _int8_matrix_arg(_load_npy(args.a, "--a"), "--a", "(M, K)")
    b = _int8_matrix_arg(_load_npy(args.b, "--b"), "--b", "(K, N)")
    if a.shape[1] != b.shape[0]:
        raise CliError(f"--b: has {b.shape[0]} rows but --a has K = {a.shape[1]} columns "
                       f"(A is M x K, B is K x N)")
    _check_k(a.shape[1], cfg, f"--a has K = {a.shape[1]} columns")
    kwargs: dict[str, Any] = {
        "bias": _load_npy(args.bias, "--bias") if args.bias is not None else None,
        "zp_a": _int8_arg(args.zp_a, "--zp-a"),
        "zp_out": _int8_arg(args.zp_out, "--zp-out"),
        "act_min": args.act_min,
        "act_max": args.act_max,
    }
    if given_scales:
        kwargs["scale_a"] = _positive_scale(args.scale_a, "--scale-a")
        kwargs["scale_b"] = _scale(args.scale_b, "--scale-b")
        if not np.all(np.asarray(kwargs["scale_b"]) > 0):
            raise CliError(f"--scale-b: {args.scale_b!r} holds a value that is not positive")
        kwargs["scale_out"] = _positive_scale(args.scale_out, "--scale-out")
    if given_fixed:
        kwargs["multiplier"] = _load_npy(args.multiplier, "--multiplier")
        kwargs["shift"] = _load_npy(args.shift, "--shift")
    check_simulator(args.sim)

    run = _import_sim("run")
    c, stats = run.gemm(a, b, config=cfg, sim=args.sim, waves=args.waves, **kwargs)
    _save_npy_atomic(out, c)
    if args.json:
        record = dict(stats)
        record["out"] = str(out)
        print(json.dumps(record, sort_keys=True, default=_json_default))
    else:
        print(f"cycles={int(stats['cycles'])} model_cycles={int(stats['model_cycles'])} "
              f"utilization={100 * float(stats['utilization']):.1f}%")
    return 0


def cmd_run_softmax(args: argparse.Namespace) -> int:
    out = _out_file(args.out)

    # No --config: None, so sim.run.softmax adds a default [softmax] section to the embedded
    # default; a given file must have its own.
    cfg = _load_config(args.config) if args.config is not None else None
    scores = _load_npy(args.scores, "--scores")
    mask = _load_npy(args.mask, "--mask") if args.mask is not None else None
    scale = _float32(args.scale, "--scale")
    if not scale > 0:
        raise CliError(f"--scale: {args.scale!r} is not a positive number")
    check_simulator(args.sim)

    run = _import_sim("run")
    probs, stats = run.softmax(scores, scale, mask=mask, config=cfg, sim=args.sim,
                               waves=args.waves)
    _save_npy_atomic(out, probs)
    if args.json:
        record = dict(stats)
        record["out"] = str(out)
        print(json.dumps(record, sort_keys=True, default=_json_default))
    else:
        print(f"cycles={int(stats['cycles'])} model_cycles={int(stats['model_cycles'])} "
              f"utilization={100 * float(stats['utilization']):.1f}%")
    return 0


def _int8_matrix_arg(arr, option: str, shape: str):
    """An int8-valued 2-D array given on the command line, checked with the option's name."""
    import numpy as np
    if arr.dtype.kind not in "iu":
        raise CliError(f"{option}: must hold int8 integers, not an array of dtype {arr.dtype}")
    if arr.ndim != 2:
        raise CliError(f"{option}: must be a 2-D {shape} array, not shape {arr.shape}")
    if arr.size and (int(arr.min()) < -128 or int(arr.max()) > 127):
        raise CliError(f"{option}: values must lie in [-128, 127], not "
                       f"[{int(arr.min())}, {int(arr.max())}]")
    return arr.astype(np.int8)


def _check_k(k: int, cfg, what: str) -> None:
    """One wording, for every command, of a job longer than the design's reduction limit."""
    if k > cfg.k_max:
        raise CliError(f"{what}, more than this design's k_max = {cfg.k_max} (config key "
                       f"k_max; the engine rejects the job: BAD_SHAPE)")


def _out_file(text: str) -> Path:
    """``--out`` of a command that writes one array: that file (its folder is made, if missing,
    when the result is written: :func:`_save_npy_atomic`)."""
    out = Path(text)
    if out.is_dir():
        raise CliError(f"--out: {out}: is a folder (--out names the file this command writes)")
    return out


def _positive_scale(text: str, option: str) -> float:
    value = _float32(text, option)
    if not value > 0:
        raise CliError(f"{option}: {text!r} is not a positive number")
    return value


def _int8_arg(value: int, option: str) -> int:
    if not -128 <= value <= 127:
        raise CliError(f"{option}: {value} is outside [-128, 127]")
    return value


def cmd_run_attention(args: argparse.Namespace) -> int:
    out = _out_file(args.out)

    cfg = _load_config(args.config) if args.config is not None else None
    q = _int8_matrix_arg(_load_npy(args.q, "--q"), "--q", "(M, d)")
    k = _int8_matrix_arg(_load_npy(args.k, "--k"), "--k", "(N, d)")
    v = _int8_matrix_arg(_load_npy(args.v, "--v"), "--v", "(N, d)")
    m, d = q.shape
    n = k.shape[0]
    if m < 1 or d < 1:
        raise CliError(f"--q: must have at least one row and one column, not shape {q.shape}")
    if n < 1 or k.shape[1] != d:
        raise CliError(f"--k: must have shape (N, {d}) with N >= 1 (d of --q), not {k.shape}")
    if v.shape != k.shape:
        raise CliError(f"--v: must have the shape of --k, {k.shape}, not {v.shape}")
    mask = None
    if args.mask is not None:
        mask = _load_npy(args.mask, "--mask")
        if mask.dtype != bool:
            raise CliError(f"--mask: must be a bool array, not dtype {mask.dtype}")
        if mask.shape not in ((m, n), (n,)):
            raise CliError(f"--mask: must have shape (M, N) = {(m, n)} or (N,) = {(n,)}, "
                           f"not {mask.shape}")
    scales = {name: _positive_scale(getattr(args, name), "--" + name.replace("_", "-"))
              for name in ("scale_q", "scale_k", "scale_v", "scale_out")}
    zp_v = _int8_arg(args.zp_v, "--zp-v")
    zp_out = _int8_arg(args.zp_out, "--zp-out")
    from npugen.sim import golden      # imported here: the CLI loads without sim
    if args.scale_s is not None:
        scale_s = _positive_scale(args.scale_s, "--scale-s")
        calibrated = False
    else:
        scale_s = golden.calibrate_score_scale(q, k, scales["scale_q"], scales["scale_k"])
        calibrated = True
    # the scales must give representable multipliers (one line naming the scale at fault): the
    # golden model checks them, and its ValueError is the user's input here
    try:
        golden.attention_params(scales["scale_q"], scales["scale_k"], scales["scale_v"],
                                scale_s, scales["scale_out"], d, zp_v=zp_v, zp_o=zp_out)
    except ValueError as e:
        raise CliError(str(e)) from None
    check_simulator(args.sim)

    run = _import_sim("run")
    o, stats = run.attention(q, k, v, **scales, scale_s=scale_s, zp_v=zp_v, zp_out=zp_out,
                             mask=mask, causal=args.causal, config=cfg, sim=args.sim,
                             waves=args.waves)
    _save_npy_atomic(out, o)
    if args.json:
        record = dict(stats)
        record["scale_s"] = scale_s
        record["out"] = str(out)
        print(json.dumps(record, sort_keys=True, default=_json_default))
    else:
        if calibrated:
            print(f"scale_s={scale_s!r} (calibrated: max|Q.K^T| * scale_q * scale_k / "
                  f"sqrt({d}) / 127)")
        print(f"cycles={int(stats['cycles'])} model_cycles={int(stats['model_cycles'])} "
              f"utilization={100 * float(stats['utilization']):.1f}%")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    check_simulator(args.sim)
    if args.layer0:
        cfg = _load_config(args.config)
        realdata = _import_sim("realdata")
        return _exit_code(realdata.demo(cfg, sim=args.sim))
    minilm = _import_sim("minilm")
    cfg = _load_config(args.config) if args.config is not None else minilm.minilm_config()
    return _exit_code(minilm.demo(cfg, sim=args.sim))


def cmd_embed(args: argparse.Namespace) -> int:
    out = _out_file(args.out)
    minilm = _import_sim("minilm")
    sentences = list(args.text or [])
    for path in args.file or []:
        sentences += minilm.read_sentences(path)
    if not sentences:
        raise CliError("no sentence: give --text or --file")
    if any(not t.strip() for t in args.text or []):
        raise CliError("--text: an empty sentence is not allowed (give some words)")
    if args.layers is not None and not 1 <= args.layers <= minilm.LAYERS:
        raise CliError(f"--layers: must be 1 to {minilm.LAYERS}, not {args.layers}")
    cfg = _load_config(args.config) if args.config is not None else minilm.minilm_config()
    check_simulator(args.sim)
    from .realdata import ModelUnavailableError
    try:
        minilm.embeddings_input(sentences[0])
    except ModelUnavailableError as e:
        raise CliError(str(e), code=2) from None

    def progress(line: str) -> None:
        print(f"npugen: embed: {line}", file=sys.stderr, flush=True)

    e, report = minilm.embed(sentences, config=cfg, sim=args.sim, layers=args.layers,
                             progress=progress)
    _save_npy_atomic(out, e)
    if args.json:
        record = dict(report)
        record.update(out=str(out), sentences=sentences)
        print(json.dumps(record, sort_keys=True, default=_json_default))
    else:
        print(f"{len(sentences)} sentence(s), {report['layers']} layer(s) on {report['config']} "
              f"({args.sim}); bit-exact with the golden pipeline: "
              f"{'yes' if report['bit_exact'] else 'NO'}")
        for i, s in enumerate(sentences):
            print(f"{i}: tokens={len(report['tokens'][i])} cosine_vs_float="
                  f"{report['cosine'][i]:.5f} cycles={report['cycles'][i]} "
                  f"(gemm {report['gemm_cycles'][i]}, attention "
                  f"{report['attention_cycles'][i]})  {s}")
        if report.get("spearman") is not None:
            print(f"Spearman of the pairwise similarities vs float: {report['spearman']:.4f}")
        steps = ("qkv", "attention", "o", "f1", "f2")
        print("cycles per layer (all sentences): " + " ".join(f"{x:>9}" for x in steps)
              + "     total")
        for li, row in enumerate(report["layer_cycles"]):
            print(f"  layer {li}{'':26}" + " ".join(f"{row[x]:>9}" for x in steps)
                  + f" {sum(row.values()):>9}")
        print(f"wrote {out} {tuple(e.shape)} float32")
    if report["bit_exact"] is False:
        raise CliError("the RTL output differs from the golden pipeline", code=1)
    return 0


def cmd_area(args: argparse.Namespace) -> int:
    from ..hw.synth import area, check_target
    from ..hw.synth.report import markdown

    dsp, pnr_minutes = _dsp_budget(args.dsp), _pnr_minutes(args.pnr_minutes)
    seed = _pnr_seed(args.seed)
    cfg = _load_config(args.config)
    check_target(args.target, pnr=not args.estimate, sta=not args.estimate)
    command = "npugen " + " ".join(args.argv)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"npugen area: {msg}", file=sys.stderr, flush=True)

    report = area(cfg, args.target, out=args.out, device=args.device, dsp=dsp,
                  estimate_only=args.estimate, command=command, progress=progress,
                  pnr_minutes=pnr_minutes, seed=seed, top=build_npu)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(markdown(report), end="")
        print(f"reports: {Path(args.out) / cfg.name / 'qor' / (args.target + '.json')} and .md")
    return 0


def _clock_mhz(text: str) -> float:
    """``--clock-mhz``: a bad value is one line (CliError, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise CliError(f"--clock-mhz: {text!r} is not allowed (a positive frequency in MHz)")
    return value


#: The default random job of ``npugen power`` (``npugen.sim.power.DEFAULT_MKN``, written out
#: here: the parser imports no ``sim`` module).
POWER_MKN = (16, 16, 8)


def cmd_power(args: argparse.Namespace) -> int:
    dims = {"--m": args.m, "--k": args.k, "--n": args.n}
    if args.minilm_q:
        if args.m is not None:
            raise CliError("--minilm-q: M is the sentence's tokens (20); give it without --m")
        del dims["--m"]                 # --k and --n: a slice of the Q projection
    given = [k for k, v in dims.items() if v is not None]
    if given and len(given) != len(dims):
        raise CliError(_also_needs(given, [k for k in dims if k not in given]))
    clock = _clock_mhz(args.clock_mhz)
    cfg = _load_config(args.config)
    if given:
        _check_k(args.k, cfg, f"--k {args.k}")
    power = _import_sim("power")
    power.check_tools()
    if args.minilm_q:
        from .realdata import model_dir
        model_dir()                      # a missing model package is one line, exit 2

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"npugen power: {msg}", file=sys.stderr, flush=True)

    if args.minilm_q and given and (args.k > 384 or args.n > 384):
        raise CliError(f"--k {args.k} --n {args.n}: the Q projection is 384 x 384 (K x N)")
    report = power.measure(cfg, mkn=(args.m, args.k, args.n) if given else None,
                           minilm_q=args.minilm_q, seed=args.seed, clock_mhz=clock,
                           delays=args.delays, out=args.out, progress=progress,
                           command="npugen " + " ".join(args.argv), top=build_npu)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print(power.markdown(report), end="")
        print(f"reports: {Path(args.out) / cfg.name / 'power' / (report['label'] + '.json')} "
              f"and .md")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..hw.synth import check_target
    from ..hw.synth import sweep as sw

    if args.grid is not None:
        grid = sw.load_grid(args.grid)
    else:
        grid = sw.Grid()
    grid = grid.override(rows=args.rows, cols=args.cols, dataflow=args.dataflow,
                         k_max=args.k_max, target=args.target)
    check_target(grid.target, pnr=False, sta=False)
    result = sw.sweep(grid, out=args.out, jobs=args.jobs, scheduler=args.scheduler,
                      progress=not args.quiet, top=build_npu)
    print(f"{len(result.rows)} points ({result.cached} from the cache)")
    print(f"csv: {result.csv}")
    print(f"plot: {result.png}")
    return 0


def _perf_bandwidth(args: argparse.Namespace, pm):
    """``--bandwidth`` as an exact rate (perfmodel.stream_rate), or None."""
    if args.bandwidth is None:
        return None
    try:
        return pm.stream_rate(args.bandwidth)
    except ValueError:
        raise CliError(f"--bandwidth: must be a positive number of bytes per cycle, not "
                       f"{args.bandwidth!r}") from None


def _perf_roofline(args: argparse.Namespace) -> int:
    minilm = _import_sim("minilm")
    pm = _import_sim("perfmodel")
    cfg = _load_config(args.config) if args.config is not None else minilm.minilm_config()
    bandwidth = _perf_bandwidth(args, pm)
    bw = "as built (every beat offered at once)" if bandwidth is None else \
        f"{args.bandwidth} bytes/cycle on each input stream (token-bucket sources, docs/perf.md)"
    print(f"{cfg.name}: {cfg.rows}x{cfg.cols} {cfg.dataflow}, all-MiniLM-L6-v2 layer GEMMs; "
          f"stream bandwidth {bw}")
    print(f"{'M':>4} {'job':>4} {'MxKxN':>15} {'MACs/byte':>10} {'model cyc':>10} "
          f"{'bw cyc':>10} {'bw bound':>10} {'util':>7}  bound")
    for m in (args.tokens, 1):
        for r in minilm.roofline(cfg, m, bandwidth):
            bwc, bwb = (("-", "-") if r["bw_cycles"] is None else
                        (str(r["bw_cycles"]), f"{r['bw_bound']:.0f}"))
            print(f"{m:>4} {r['job']:>4} {r['m']:>5}x{r['k']}x{r['n']:<5} "
                  f"{r['intensity']:>10.2f} {r['model_cycles']:>10} {bwc:>10} {bwb:>10} "
                  f"{100 * r['utilization']:>6.2f}%  {r['bound']}")
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    if args.roofline:
        return _perf_roofline(args)
    missing = [f"--{d}" for d in ("m", "k", "n") if getattr(args, d) is None]
    if missing:
        raise CliError(f"the following arguments are required: {', '.join(missing)} "
                       f"(or --roofline)")
    cfg = _load_config(args.config)
    pm = _import_sim("perfmodel")
    m, k, n = args.m, args.k, args.n
    _check_k(k, cfg, f"--k {k}")
    requant = not args.raw
    bandwidth = _perf_bandwidth(args, pm)
    cycles = pm.gemm_cycles(cfg, m, k, n, requant=requant)
    util = pm.utilization(cfg, m, k, n, cycles=cycles)
    print(f"{cfg.name}: {cfg.rows}x{cfg.cols} {cfg.dataflow}, job {m}x{k}x{n} (M x K x N), "
          f"{'requant' if requant else 'raw'}")
    print(f"model_cycles={cycles} ideal_cycles={pm.ideal_cycles(cfg, m, k, n):g} "
          f"utilization={100 * util:.1f}%")
    if bandwidth is not None:
        bw = pm.gemm_cycles(cfg, m, k, n, requant=requant, bandwidth=bandwidth)
        print(f"bandwidth={args.bandwidth} bytes/cycle on each input stream: model_cycles={bw} "
              f"stream_bound={pm.stream_bound(cfg, m, k, n, bandwidth):.0f} "
              f"utilization={100 * pm.utilization(cfg, m, k, n, cycles=bw):.1f}%")
    if args.scalesim:
        ss = pm.scalesim_formula(cfg, m, k, n)
        print(f"scalesim_formula_cycles={ss} "
              f"utilization={100 * pm.ideal_cycles(cfg, m, k, n) / ss:.1f}%")
        folder = Path(args.out) / cfg.name / "perf"
        files = pm.write_scalesim(cfg, m, k, n, folder)
        for key in ("config", "topology", "layout"):
            print(f"{key}: {files[key]}")
        print(f"run SCALE-Sim: cd {folder} && {files['command']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    rep = _import_sim("report")
    if args.measure:
        check_simulator("verilator")
    paths = rep.write_report(cfg, args.out, top=build_npu, measure=args.measure)
    for p in paths:
        print(p)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers")
    if not values:
        raise argparse.ArgumentTypeError("empty list")
    return values


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _dsp_budget(text: str | None) -> int | None:
    """``--dsp``: a bad value is one line, like a bad ``--target`` (CliError, exit 2)."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise CliError(f"--dsp: {text!r} is not allowed (a number of DSP blocks, 0 or more)")
    return value


def _pnr_minutes(text: str | float) -> float:
    """``--pnr-minutes``: a bad value is one line (CliError, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise CliError(f"--pnr-minutes: {text!r} is not allowed (a positive number of "
                       f"minutes)")
    return value


def _pnr_seed(text: str | int) -> int:
    """``--seed`` of ``npugen area``: a bad value is one line (CliError, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 31:
        raise CliError(f"--seed: {text!r} is not allowed (an integer from 0 to {2 ** 31 - 1})")
    return value


# -- parser -----------------------------------------------------------------------------------

def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=None,
                   help="configuration TOML file (default: the embedded default, which "
                        "`npugen config` prints)")


def _add_sim(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sim", choices=_SIMS, default="verilator",
                   help="simulator (default: %(default)s)")


def _add_waves(p: argparse.ArgumentParser) -> None:
    p.add_argument("--waves", action="store_true",
                   help="write a waveform trace (default: off)")


def _add_report_outputs(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--json`` and ``--quiet`` of a command that writes a report into the
    design's folder (``area``, ``power``)."""
    p.add_argument("--out", metavar="DIR", default="build",
                   help="folder of design folders (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print the report as one JSON record (default: Markdown)")
    p.add_argument("--quiet", action="store_true", help="no progress lines (default: off)")


def _tag_subparsers(parser: argparse.ArgumentParser) -> None:
    """Give each (sub)command's namespace its own parser, so that an unknown option is
    reported with that command's usage line (``npugen generate --bogus``), not the top's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                p.set_defaults(_parser=p)
                _tag_subparsers(p)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``npugen`` command."""
    parser = argparse.ArgumentParser(
        prog="npugen",
        description="Generate, verify and run int8 systolic-array GEMM engines.",
        epilog="Without --config, commands use the embedded default design; `npugen config` "
               "prints it as TOML (a starting point for your own). Exit codes: 0 success, 1 a "
               "check failed, 2 a bad argument, configuration, input file or missing tool.")
    parser.add_argument("--version", action="version", version=f"npugen {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("generate", help="write the design folder and lint its Verilog",
                       description="Write <out>/<name>/: Verilog, filelist, FuseSoC core, C "
                                   "header, SDC, manifest and report (docs/outputs.md); then "
                                   "lint the Verilog with Verilator.")
    _add_config(p)
    p.add_argument("--out", metavar="DIR", default="build",
                   help="folder that receives the design folder (default: %(default)s)")
    p.add_argument("--no-lint", action="store_true",
                   help="skip the Verilator lint (default: lint)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("verify", help="run the cocotb regression of a design",
                       description="Generate the design and run its cocotb testbenches against "
                                   "the golden models.")
    _add_config(p)
    _add_sim(p)
    p.add_argument("--seed", metavar="N", type=int, default=None,
                   help="random seed of stimuli and backpressure (default: a fresh random seed, "
                        "printed first)")
    _add_waves(p)
    p.add_argument("--full", action="store_true",
                   help="also run the slow sweeps (default: off)")
    m = p.add_argument_group(
        "mutation testing", "With --mutants N: grade the regression by how many of N mutants of "
        "the design's netlist (Yosys mutate) its fast tests kill; reports mutation.json and "
        "mutation.md in OUT/<name>/ (docs/verification.md).")
    m.add_argument("--mutants", metavar="N", type=_positive, default=None,
                   help="mutants per top (default: no mutation campaign)")
    m.add_argument("--top", choices=("npu", "softmax", "attention"), default=None,
                   help="the top to mutate (default: every top of the design)")
    m.add_argument("--jobs", metavar="J", type=_positive, default=None,
                   help="mutants run at once (default: the CPU count)")
    m.add_argument("--fail-under", metavar="PERCENT", type=_percent, default=None,
                   help="exit 1 when the score is under this (default: never)")
    m.add_argument("--out", metavar="DIR", default=None,
                   help="folder that receives <name>/mutation.json and .md (default: build)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("run", help="run one job through the simulated RTL",
                       description="Run one job through the simulated RTL.")
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    g = kinds.add_parser("gemm", help="C = A.B + bias, raw int32 or requantized int8",
                         description="Run C = A.B + bias through the simulated RTL and save C. "
                                     "Without --scale-*/--multiplier the result is the raw "
                                     "accumulator. Prints cycles=<n> model_cycles=<n> "
                                     "utilization=<p>%.")
    g.add_argument("--a", metavar="A.npy", required=True, help="int8 A, M x K (required)")
    g.add_argument("--b", metavar="B.npy", required=True, help="int8 B, K x N (required)")
    g.add_argument("--bias", metavar="BIAS.npy", default=None,
                   help="int32 bias, N values (default: none)")
    g.add_argument("--zp-a", metavar="N", type=int, default=0,
                   help="zero point of A (default: %(default)s)")
    g.add_argument("--scale-a", metavar="X", default=None,
                   help="scale of A, parsed as float32 (default: none)")
    g.add_argument("--scale-b", metavar="X|B.npy", default=None,
                   help="scale of B: one float32 number, or a .npy of N per-channel scales "
                        "(default: none)")
    g.add_argument("--scale-out", metavar="X", default=None,
                   help="scale of C, parsed as float32 (default: none)")
    g.add_argument("--multiplier", metavar="M.npy", default=None,
                   help="int32 fixed-point multipliers, N values, instead of scales "
                        "(default: none)")
    g.add_argument("--shift", metavar="S.npy", default=None,
                   help="shifts, N values, with --multiplier (default: none)")
    g.add_argument("--zp-out", metavar="N", type=int, default=0,
                   help="zero point of C (default: %(default)s)")
    g.add_argument("--act-min", metavar="N", type=int, default=-128,
                   help="fused clamp, low bound (default: %(default)s)")
    g.add_argument("--act-max", metavar="N", type=int, default=127,
                   help="fused clamp, high bound (default: %(default)s)")
    _add_config(g)
    _add_sim(g)
    _add_waves(g)
    g.add_argument("--json", action="store_true",
                   help="print the statistics as one JSON record (default: one summary line)")
    g.add_argument("--out", metavar="C.npy", required=True,
                   help="where to save C, written atomically (required)")
    g.set_defaults(func=cmd_run_gemm)

    g = kinds.add_parser("softmax", help="int8 softmax of rows of int8 scores (OSI8)",
                         description="Run rows of int8 scores through the simulated OSI8 "
                                     "softmax unit (the standalone softmax top of the "
                                     "configuration; each row is streamed twice) and save the "
                                     "int8 probabilities (scale 1/256, zero point -128). "
                                     "Prints cycles=<n> model_cycles=<n> utilization=<p>%.")
    g.add_argument("--scores", metavar="S.npy", required=True,
                   help="int8 scores, one row (N,) or rows (rows, N) (required)")
    g.add_argument("--scale", metavar="C", required=True,
                   help="score scale c (1/sqrt(d) and temperature folded in), parsed as "
                        "float32 (required)")
    g.add_argument("--mask", metavar="M.npy", default=None,
                   help="bool mask of the shape of the scores, True = attend (default: attend "
                        "every key)")
    g.add_argument("--config", metavar="FILE", default=None,
                   help="configuration TOML file with a [softmax] section (default: the "
                        "embedded default with a default [softmax] section: F=24, B=16, "
                        "N_max=32768, one lane)")
    _add_sim(g)
    _add_waves(g)
    g.add_argument("--json", action="store_true",
                   help="print the statistics as one JSON record (default: one summary line)")
    g.add_argument("--out", metavar="P.npy", required=True,
                   help="where to save the probabilities, written atomically (required)")
    g.set_defaults(func=cmd_run_softmax)

    g = kinds.add_parser("attention", help="one head of int8 attention (fused OSI8)",
                         description="Run softmax(Q.K^T / sqrt(d)).V of one head through the "
                                     "simulated fused OSI8 attention unit (the standalone "
                                     "attention top of the configuration) and save the int8 "
                                     "output (scale --scale-out, zero point --zp-out). Q and K "
                                     "are symmetric int8 (zero point 0), V has zero point "
                                     "--zp-v. Without --scale-s the score scale is calibrated "
                                     "(max |s| / 127, 1/sqrt(d) folded in) and printed. Prints "
                                     "cycles=<n> model_cycles=<n> utilization=<p>%.")
    g.add_argument("--q", metavar="Q.npy", required=True,
                   help="int8 queries, M x d, symmetric (required)")
    g.add_argument("--k", metavar="K.npy", required=True,
                   help="int8 keys, N x d, symmetric (required)")
    g.add_argument("--v", metavar="V.npy", required=True,
                   help="int8 values, N x d, zero point --zp-v (required)")
    for name, what in (("q", "Q"), ("k", "K"), ("v", "V")):
        g.add_argument(f"--scale-{name}", metavar="X", required=True,
                       help=f"scale of {what}, parsed as float32 (required)")
    g.add_argument("--scale-out", metavar="X", required=True,
                   help="scale of the output, parsed as float32 (required)")
    g.add_argument("--scale-s", metavar="X", default=None,
                   help="score scale: the real value of one int8 score step, 1/sqrt(d) "
                        "included, parsed as float32 (default: calibrated from the scores and "
                        "printed)")
    g.add_argument("--zp-v", metavar="N", type=int, default=0,
                   help="zero point of V (default: %(default)s)")
    g.add_argument("--zp-out", metavar="N", type=int, default=0,
                   help="zero point of the output (default: %(default)s)")
    g.add_argument("--mask", metavar="M.npy", default=None,
                   help="bool mask, M x N or N values (one for every query), True = attend "
                        "(default: attend every key)")
    g.add_argument("--causal", action="store_true",
                   help="query i attends key j only if j <= i, ANDed with --mask "
                        "(default: off)")
    g.add_argument("--config", metavar="FILE", default=None,
                   help="configuration TOML file with an [attention] section (default: the "
                        "embedded default with an [attention] section for d = the columns of "
                        "Q)")
    _add_sim(g)
    _add_waves(g)
    g.add_argument("--json", action="store_true",
                   help="print the statistics as one JSON record (default: one summary line)")
    g.add_argument("--out", metavar="O.npy", required=True,
                   help="where to save the int8 output, M x d, written atomically (required)")
    g.set_defaults(func=cmd_run_attention)

    p = sub.add_parser("demo", help="run all-MiniLM-L6-v2 on a sentence through the RTL",
                       description="Generate the design and run all six layers of "
                                   "all-MiniLM-L6-v2 on one sentence through it (every GEMM "
                                   "job on the engine, every attention head on the attention "
                                   "unit, bit-exact against the golden pipeline), then print "
                                   "the cycles per layer and the embedding's cosine to the "
                                   "float model (about 90 seconds from scratch on "
                                   "Verilator; Icarus runs this design at about 300 cycles "
                                   "a second, so --sim icarus takes about 50 minutes). "
                                   "With --layer0: layer 0's Q, K and V "
                                   "projections and 12 heads in detail, with accuracy "
                                   "against float per projection and head.")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="configuration TOML file (default: configs/minilm.toml's design, the "
                        "embedded default plus an [attention] section d = 32, 12 heads; with "
                        "--layer0 the embedded default)")
    _add_sim(p)
    p.add_argument("--layer0", action="store_true",
                   help="layer 0 in detail instead of the whole model, on the cocotb runner "
                        "(default: the whole model)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("embed", help="sentence embeddings of all-MiniLM-L6-v2 through the RTL",
                       description="Compute L2-normalized all-MiniLM-L6-v2 sentence embeddings "
                                   "with every GEMM job and attention head of the six layers "
                                   "on the simulated RTL (the host does embeddings, residual "
                                   "adds, LayerNorm, GELU and pooling: docs/realdata.md), check "
                                   "every step bit-exact against the golden pipeline, and "
                                   "print per sentence the cosine against the float model and "
                                   "the cycles. Progress on stderr.")
    p.add_argument("--text", metavar="TEXT", action="append",
                   help="a sentence; repeat for more (default: none)")
    p.add_argument("--file", metavar="F", action="append",
                   help="a text file of sentences, one per line, # comments (default: none)")
    p.add_argument("--out", metavar="E.npy", required=True,
                   help="where to save the (n, 384) float32 embeddings, written atomically "
                        "(required)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="configuration TOML file with an [attention] section for d = 32 "
                        "(default: configs/minilm.toml)")
    p.add_argument("--layers", metavar="N", type=int, default=None,
                   help="run only the first N layers, a slice (default: all 6)")
    _add_sim(p)
    p.add_argument("--json", action="store_true",
                   help="print the report as one JSON record (default: one line per sentence)")
    p.set_defaults(func=cmd_embed)

    from ..hw.synth.flow import PNR_MINUTES, PNR_SEED, TARGETS
    p = sub.add_parser("area", help="area and timing with open tools",
                       description="Synthesize the design with Yosys for a target, place and "
                                   "route it (ecp5, ice40: nextpnr) or time it (asic: OpenSTA), "
                                   "and write <out>/<name>/qor/<target>.json and .md "
                                   "(docs/area.md).")
    _add_config(p)
    p.add_argument("--target", default="generic", metavar="|".join(TARGETS),
                   help="synthesis target (default: %(default)s)")
    p.add_argument("--device", metavar="NAME", default=None,
                   help="ecp5/ice40 device, e.g. LFE5U-45F (default: the smallest that fits)")
    p.add_argument("--dsp", metavar="N", default=None,
                   help="at most N DSP blocks; the other multipliers go to LUTs (default: as "
                        "many as the device has)")
    p.add_argument("--estimate", action="store_true",
                   help="only the fast hierarchical estimate: no flat run, no place-and-route, "
                        "no timing (default: off)")
    p.add_argument("--pnr-minutes", metavar="MIN", default=PNR_MINUTES,
                   help="ecp5/ice40: stop nextpnr after MIN minutes (wall clock) and report "
                        "Fmax after placement only (default: %(default)g)")
    p.add_argument("--seed", metavar="N", default=PNR_SEED,
                   help="ecp5/ice40: nextpnr's placement seed (default: %(default)s)")
    _add_report_outputs(p)
    p.set_defaults(func=cmd_area)

    p = sub.add_parser("power", help="energy of a job from gate-level switching (OSU 0.18 um)",
                       description="Synthesize the design with the asic flow (reusing "
                                   "<out>/<name>/qor/asic/ when current), simulate the mapped "
                                   "netlist on Icarus on one job's streams, annotate OpenSTA "
                                   "with the simulated activity and write power and energy "
                                   "(per job, per MAC, per array slot, per token; by block and "
                                   "kind) to <out>/<name>/power/ (docs/power.md).")
    _add_config(p)
    for dim, what, default in zip("mkn", ("rows of A", "columns of A, rows of B",
                                           "columns of B"), POWER_MKN):
        p.add_argument(f"--{dim}", metavar=dim.upper(), type=_positive, default=None,
                       help=f"{what} of a random int8 job; --m, --k and --n go together "
                            f"(default: {default})")
    p.add_argument("--minilm-q", action="store_true",
                   help="run the MiniLM-L6 layer-0 Q projection's real tensors instead (20 "
                        "tokens x 384 x 384; with --k and --n only its first K inputs and N "
                        "outputs) (default: off)")
    p.add_argument("--seed", metavar="N", type=int, default=0,
                   help="seed of the random operands (default: %(default)s)")
    p.add_argument("--clock-mhz", metavar="F", default="100",
                   help="clock of the simulation and the power figures, MHz (default: "
                        "%(default)s)")
    p.add_argument("--delays", action="store_true",
                   help="simulate with the cells' delays, glitches counted; the clock must be "
                        "below the design's Fmax (default: zero delay)")
    _add_report_outputs(p)
    p.set_defaults(func=cmd_power)

    p = sub.add_parser("sweep", help="area over a grid of configurations",
                       description="Run the hierarchical area estimate over a grid of rows, "
                                   "cols, dataflow and k_max (a TOML file or flags), in "
                                   "parallel, cached by design; write a CSV and a Pareto plot "
                                   "of area against peak throughput (docs/area.md).")
    p.add_argument("--grid", metavar="FILE", default=None,
                   help="grid TOML file (default: flags, else a small built-in grid)")
    p.add_argument("--rows", metavar="N,N", type=_int_list, default=None,
                   help="rows to sweep (default: the grid's)")
    p.add_argument("--cols", metavar="N,N", type=_int_list, default=None,
                   help="cols to sweep (default: the grid's)")
    p.add_argument("--dataflow", metavar="ws,os", type=_str_list, default=None,
                   help="dataflows to sweep (default: the grid's)")
    p.add_argument("--k-max", metavar="N,N", type=_int_list, default=None,
                   help="k_max values to sweep (default: the grid's)")
    p.add_argument("--target", default=None, metavar="|".join(TARGETS),
                   help="synthesis target (default: the grid's, else generic)")
    p.add_argument("--jobs", metavar="N", type=int, default=None,
                   help="parallel syntheses on this machine (default: the number of cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on a Dask cluster at ADDRESS, which needs dask[distributed] "
                        "(default: local processes)")
    p.add_argument("--out", metavar="DIR", default="build/sweep",
                   help="folder of the sweep's designs, cache, CSV and plot "
                        "(default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: off)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("perf", help="modelled cycles of a GEMM job; SCALE-Sim inputs",
                       description="Print the cycle-exact model's cycles and utilization of a "
                                   "GEMM job on the design (sim/perfmodel.py, docs/perf.md); "
                                   "with --scalesim also SCALE-Sim's formula and its inputs "
                                   "(configuration and GEMM topology) in <out>/<name>/perf/.")
    _add_config(p)
    for dim, what in (("m", "rows of A and C"), ("k", "columns of A, rows of B"),
                      ("n", "columns of B and C")):
        p.add_argument(f"--{dim}", metavar=dim.upper(), type=_positive, default=None,
                       help=f"{what}; not with --roofline (required)")
    p.add_argument("--raw", action="store_true",
                   help="a raw-accumulator job instead of a requantized one (default: off)")
    p.add_argument("--scalesim", action="store_true",
                   help="also write SCALE-Sim's .cfg and GEMM topology and print its formula "
                        "(default: off)")
    p.add_argument("--roofline", action="store_true",
                   help="instead: the roofline of all-MiniLM-L6-v2's layer GEMMs at M = "
                        "--tokens and M = 1, on configs/minilm.toml unless --config "
                        "(default: off)")
    p.add_argument("--bandwidth", metavar="B", default=None,
                   help="also the cycles with B bytes per cycle on each input stream (a "
                        "number such as 4, 0.5 or 3/2), the sources throttled as docs/perf.md "
                        "says; the cycles stay exact (default: every beat offered at once)")
    p.add_argument("--tokens", metavar="T", type=_positive, default=20,
                   help="with --roofline: sentence length M (default: %(default)s)")
    p.add_argument("--out", metavar="DIR", default="build",
                   help="folder of design folders (default: %(default)s)")
    p.set_defaults(func=cmd_perf)

    p = sub.add_parser("report", help="one page per design: parameters, ports, QoR, cycles",
                       description="Write <out>/<name>/report/report.md and report.html: the "
                                   "design's parameters, ports (manifest), QoR where "
                                   "<out>/<name>/qor/*.json exists, and modelled cycles and "
                                   "utilization over a grid of M, K, N with a plot.")
    _add_config(p)
    p.add_argument("--out", metavar="DIR", default="build",
                   help="folder of design folders (default: %(default)s)")
    p.add_argument("--measure", action="store_true",
                   help="also run a few jobs on the RTL (Verilator) and compare their cycles "
                        "with the model (default: off)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("config", help="print a configuration as TOML (the embedded default)",
                       description="Print the configuration as TOML on stdout: the embedded "
                                   "default design without --config (it is not a file of the "
                                   "installed package you could open), or the given file with "
                                   "every key, derived values as comments (docs/config.md).")
    _add_config(p)
    p.set_defaults(func=cmd_config)
    _tag_subparsers(parser)
    return parser


class _StderrHandler(logging.Handler):
    """Log records as ``npugen: <message>`` lines on the current ``sys.stderr`` (looked up at
    each record, so that a replaced stream, as under pytest's capture, is honoured); nothing
    when there is no stderr (never stdout, which may carry ``--json``)."""

    npugen = True

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr
        if stream is None:
            return
        try:
            stream.write(f"npugen: {record.getMessage()}\n")
            stream.flush()
        except Exception:       # a closed or broken stderr must not fail the command
            self.handleError(record)


def _log_to_stderr() -> None:
    """Show the simulation runner's progress (a design's first build takes minutes) on
    stderr, once per process (also after the module is reloaded)."""
    log = logging.getLogger("npugen.sim.runner")
    if not any(getattr(h, "npugen", False) for h in log.handlers):
        log.addHandler(_StderrHandler())
        log.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``npugen`` command.

    Parameters
    ----------
    argv : sequence of str or None
        Arguments without the program name; None for ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 success, 1 a failed check, 2 a bad argument, configuration, input file
        or missing tool.
    """
    from ..hw.emit import EmitError

    _log_to_stderr()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = argv
    try:
        return args.func(args)
    except EmitError as e:
        return _fail(f"the design cannot be emitted: {e}", e.exit_code)
    except NpugenError as e:            # bad input (2), a missing tool (2), a failed check (1)
        return _fail(str(e), e.exit_code)
    except OSError as e:                # a file or folder the user named cannot be used
        if e.filename is not None:
            return _fail(f"{e.filename}: {e.strerror or e}", 2)
        return _fail(str(e), 2)
    except ImportError as e:            # a part of npugen (sim.*) missing or not importable
        return _fail(f"a part of npugen cannot be imported: {e}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(message: str, code: int) -> int:
    print(f"npugen: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
