"""The one-command check of the package on a CUDA GPU (issue 27): seven steps, one table.

The command for a machine with one H100 or H200 (issue 27, part 2), from the repository root, with a
600 s limit (meant to take under 8 minutes, most of it torch.compile; not yet timed on a GPU). It needs
no install: PYTHONPATH finds the package, and the steps use only torch, torchvision, pillow, numpy,
safetensors, tqdm, matplotlib, pytest, onnx, onnxscript and onnxruntime:

    PYTHONPATH=$PWD python3 benchmarks/gpu_check.py --out /tmp/gpu_check

If the limit cuts it short, table.txt under ``--out`` (rewritten after every step) shows how far it
got; run the rest with ``--only`` (``--only 5,6,7``).

The dry run on a CPU, under a minute (tests/test_gpu_check.py runs it): every step on tiny
networks and images, the fast path without torch.compile, TorchScript in place of ONNX, the resume
on the CPU alone:

    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check_cpu

The steps:

1. ``pytest -m cuda``: every CUDA test (the no-host-sync check among them).
2. Training speed of the ``paper`` networks at 256 px: fp32 eager at batch 1 (the published
   setting), and the ``fast`` preset's path (bf16 autocast, channels_last, torch.compile, fused Adam,
   batches cut from the on-device image cache) at batch 1, 4 and 8: s/iteration, images/s, peak
   memory, compile time.
3. Quality parity: the ``tiny`` preset on the shapes dataset, fp32 eager against the fast path, same
   seed and steps, scored against the ground truth: the fast path's L1 within 10% of eager's.
4. Translation images/s of the published generator at 256 px in fp32 and bf16, batch 1, 16 and 64:
   the network alone, and the whole folder pipeline on JPEGs.
5. Resume across devices: a run saved on the CPU resumes on CUDA and one saved on CUDA resumes on the
   CPU, with and without channels_last, each for a few steps with finite losses.
6. The Translator on the device, its ONNX export checked against it, for a CycleGAN and a CUT
   generator; and three CUT training steps on the device with finite losses.
7. torch.profiler over one fast-path step: the trace (``--out``/profile_trace.json.gz), the top 10
   kernels and the share of the step's time spent launching them.

Every step runs even when one before it failed; each prints its row as it ends (a run cut short
still shows what it reached). The exit status is 1 when any step failed, and the last line names
them. ``--out`` also gets table.txt and results.json. The targets of issue 27 (fast path >= 2.5x
fp32 eager, >= 1,000 images/s in bf16) are reported, not enforced: missing one is not a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from train_speed import generator_rate, machine, measure
from translate_speed import folder_rate, photos, random_run

ROOT = Path(__file__).resolve().parent.parent
SPEEDUP_TARGET = 2.5  # the fast path over fp32 eager, 256 px, batch 1
INFERENCE_TARGET = 1000  # images/s of the generator alone in bf16 at 256 px
PARITY_TOLERANCE = 0.10  # the fast path's ground-truth L1 within this share of eager's
EXPORT_TOLERANCE = 1e-3  # mean absolute difference of an exported generator's output from the Translator's
TINY_NETS = {"ngf": 8, "ndf": 8, "n_blocks": 1, "n_layers_d": 2}


@dataclass(frozen=True)
class Scale:
    """How large each step runs: the real check, or ``--quick``'s tiny dry run."""

    train_size: int  # px of the speed and profile steps
    train_model: dict  # ModelConfig fields replacing the paper networks' ({}: paper)
    train_steps: int
    train_warmup: int
    fast_batches: tuple[int, ...]
    compiled: bool  # torch.compile in the fast path
    parity_data: dict  # make_dataset arguments
    parity_model: dict  # ModelConfig fields replacing the tiny preset's ({}: tiny)
    parity_train: dict  # TrainConfig fields replacing the tiny preset's
    translate_size: int
    translate_model: dict  # ngf and n_blocks of the generator
    translate_batches: tuple[int, ...]
    translate_steps: int
    translate_images: int  # JPEGs through the folder pipeline
    export_format: str  # "onnx"; "torchscript" where ONNX's exporter takes longer than the whole dry run


FULL = Scale(train_size=256, train_model={}, train_steps=10, train_warmup=3, fast_batches=(1, 4, 8), compiled=True,
             parity_data={}, parity_model={}, parity_train={},
             translate_size=256, translate_model={"ngf": 64, "n_blocks": 9}, translate_batches=(1, 16, 64),
             translate_steps=10, translate_images=128, export_format="onnx")
QUICK = Scale(train_size=32, train_model=TINY_NETS, train_steps=2, train_warmup=1, fast_batches=(1, 4, 8),
              compiled=False, parity_data={"n_train": 8, "n_test": 2, "size": 32}, parity_model=TINY_NETS,
              parity_train={"load_size": 36, "crop_size": 32, "epochs": 1, "epochs_decay": 1},
              translate_size=32, translate_model={"ngf": 8, "n_blocks": 1}, translate_batches=(1, 4),
              translate_steps=2, translate_images=8, export_format="torchscript")


@dataclass
class Context:
    device: torch.device
    scale: Scale
    out: Path  # what is kept: the table, results.json, the profile trace
    tmp: Path  # datasets, run folders, exports: removed at the end

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass
class Row:
    """One step's line of the table (and the lines under it); ``run_step`` names and times it."""

    status: str  # "ok", "FAIL" or "skipped"
    lines: list[str]
    data: dict = field(default_factory=dict)  # the figures, for results.json
    step: str = ""
    seconds: float = 0.0


def judged(ok: bool, lines: list[str], **data) -> Row:
    return Row("ok" if ok else "FAIL", lines, data)


class StepFailed(Exception):
    """A step found something wrong; its message is the row's line."""


# --------------------------------------------------------------------------- between steps

def reset_device(device: torch.device) -> None:
    """Start a measurement clean: no compiled graphs from before, the peak-memory marks reset."""
    if "torch._dynamo" in sys.modules:  # importing it only to reset it would cost seconds
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    elif Path("/proc/self/clear_refs").exists():
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS measure() reads


def quiet_train(config, run: Path, **kwargs) -> Path:
    """``train()`` without its progress bars on stderr (logged warnings still show)."""
    from cyclegan.train.loop import train

    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        return train(config, run, **kwargs)


class _Warnings(logging.Handler):
    """The package's warnings during one step (a torch.compile fallback among them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_step(number: int, ctx: Context) -> Row:
    """One step, whatever happens in it: an exception becomes a FAIL row naming it (traceback on
    stderr); a torch.compile fallback to eager fails the step, since it then measured no fast path."""
    name, fn = STEPS[number]
    handler = _Warnings()
    package_log = logging.getLogger("cyclegan")
    package_log.addHandler(handler)
    started = time.perf_counter()
    try:
        reset_device(ctx.device)
        row = fn(ctx)
    except Exception as exc:  # noqa: BLE001 - any failure is reported, and the next step still runs
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        row = Row("FAIL", [f"{type(exc).__name__}: {first}"])
    finally:
        package_log.removeHandler(handler)
    row.step = f"{number} {name}"
    row.seconds = time.perf_counter() - started
    for record in handler.records:
        message = record.getMessage().splitlines()[0][:200]
        if record.name == "cyclegan.train.speed":
            row.status = "FAIL"
            row.lines.append(f"torch.compile fell back to eager: {message}")
        else:
            row.lines.append(f"warning ({record.name}): {message}")
    return row


# --------------------------------------------------------------------------- 1. pytest -m cuda

def pytest_summary(output: str) -> str:
    """pytest's closing line ('3 passed, 1 skipped in 4.2s'), without its '=' rule."""
    for line in reversed(output.strip().splitlines()):
        if any(word in line for word in ("passed", "failed", "error", "skipped", "no tests ran", "deselected")):
            return line.strip("= ").strip()
    return "no pytest summary line"


def step_cuda_tests(ctx: Context) -> Row:
    if not ctx.cuda:
        return Row("skipped", ["skipped (no CUDA): every CUDA test would skip on this device"])
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider", "tests"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    summary = pytest_summary(done.stdout)
    problems = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR", "SKIPPED"))]
    ok = done.returncode == 0 and " passed" in f" {summary}"
    if not ok:
        sys.stderr.write(done.stdout[-6000:] + done.stderr[-3000:])
    return judged(ok, [summary, *problems[:8]], returncode=done.returncode)


# --------------------------------------------------------------------------- 2. training speed

def _speed_line(label: str, r: dict) -> str:
    return (f"{label}: {r['s_per_it']:.4f} s/it, {r['images_per_s']:.1f} img/s, peak {r['peak_mb']:,.0f} MB, "
            f"{'compile+' if r['fast'] else ''}warm-up {r['warmup_s']:.1f} s")


def step_training_speed(ctx: Context) -> Row:
    s = ctx.scale
    nets = "paper networks" if not s.train_model else f"networks {s.train_model}"
    memory = "CUDA allocator peak" if ctx.cuda else "peak RSS"
    fast = " + ".join((["bf16", "channels_last"] if ctx.cuda else []) + ["compile" if s.compiled else
                      "no compile (--quick)"] + (["fused Adam"] if ctx.cuda else []) + ["on-device cache"])
    lines = [f"{nets}, {s.train_size} px, {s.train_steps} timed steps after {s.train_warmup}; fast = {fast}; "
             f"memory: {memory}"]
    settings = [("fp32 eager b1", {"amp": False, "fast": False, "batch": 1})]
    settings += [(f"fast b{b}", {"amp": ctx.cuda, "fast": True, "batch": b, "cache": True}) for b in s.fast_batches]
    results = {}
    for label, options in settings:
        reset_device(ctx.device)
        results[label] = r = measure(s.train_size, ctx.device.type, steps=s.train_steps, warmup=s.train_warmup,
                                     model=s.train_model, compiled=s.compiled, **options)
        lines.append(_speed_line(label, r))
    speedup = results["fp32 eager b1"]["s_per_it"] / results["fast b1"]["s_per_it"]
    target = (f"target >= {SPEEDUP_TARGET}x: {'met' if speedup >= SPEEDUP_TARGET else 'MISSED'}" if ctx.cuda
              else "the target applies on CUDA")
    lines.append(f"fast b1 over fp32 eager b1: {speedup:.2f}x ({target})")
    nonfinite = [label for label, r in results.items() if not r["finite"]]
    if nonfinite:
        lines.append(f"non-finite losses: {', '.join(nonfinite)}")
    return judged(not nonfinite, lines, speedup=speedup,
                  settings={k: {n: v for n, v in r.items() if n != "top_ops"} for k, r in results.items()})


# --------------------------------------------------------------------------- 3. quality parity

def _parity_config(ctx: Context, data: Path, fast: bool):
    from cyclegan.config import preset

    config = preset("tiny")
    for name, value in ctx.scale.parity_model.items():
        setattr(config.model, name, value)
    t = config.train
    for name, value in ctx.scale.parity_train.items():
        setattr(t, name, value)
    t.domain_a, t.domain_b, t.test_a, t.test_b = (str(data / d) for d in ("trainA", "trainB", "testA", "testB"))
    t.device, t.seed, t.eval_every = str(ctx.device), 0, 0  # scored once at the end, against the ground truth
    t.channels_last = t.cache_images = fast
    t.amp = "auto" if fast else "off"  # auto: bf16 on CUDA, fp32 on a CPU (devices.chosen_autocast)
    t.compile = fast and ctx.scale.compiled
    return config


def ground_truth_l1(run: Path, data: Path, device: torch.device) -> tuple[float, float]:
    """The run's latest generators against the ground truth, in fp32: (L1, identity L1), mean of both directions."""
    from cyclegan.evaluate.heldout import evaluate_run
    from cyclegan.translate.translator import Translator

    results, _ = evaluate_run(Translator.from_run(run, device=device), run, data)
    directions = ("AtoB", "BtoA")
    return (sum(results[d]["l1"] for d in directions) / 2, sum(results[d]["identity_l1"] for d in directions) / 2)


def step_quality_parity(ctx: Context) -> Row:
    from cyclegan.data.synthetic import make_dataset

    data = make_dataset(ctx.tmp / "shapes", **ctx.scale.parity_data)
    scores = {}
    for label, fast in (("fp32 eager", False), ("fast", True)):
        reset_device(ctx.device)
        config = _parity_config(ctx, data, fast)
        run = quiet_train(config, ctx.tmp / f"parity_{label.replace(' ', '_')}")
        scores[label] = ground_truth_l1(run, data, ctx.device)
    eager, fast = scores["fp32 eager"][0], scores["fast"][0]
    change = (fast - eager) / eager
    t = config.train
    lines = [f"tiny preset, {t.crop_size} px, seed 0, {t.epochs}+{t.epochs_decay} epochs of batch {t.batch_size}; "
             "ground-truth L1 of the latest generators in fp32, mean of A->B and B->A",
             f"fp32 eager {eager:.4f}, fast {fast:.4f} ({change:+.1%}; must be within "
             f"{PARITY_TOLERANCE:.0%}); the identity's {scores['fast'][1]:.4f}"]
    return judged(abs(change) <= PARITY_TOLERANCE, lines, l1_eager=eager, l1_fast=fast,
                  l1_identity=scores["fast"][1])


# --------------------------------------------------------------------------- 4. translation

def step_translation(ctx: Context) -> Row:
    from cyclegan.devices import autocast_for
    from cyclegan.translate.translator import Translator

    s = ctx.scale
    run = random_run(ctx.tmp / "translate_run", s.translate_model["ngf"], s.translate_model["n_blocks"])
    images = photos(ctx.tmp / "jpegs", s.translate_images, s.translate_size, s.translate_size)
    rates: dict[str, dict[int, float]] = {}
    finite = True
    net = Translator.from_run(run, device=ctx.device).generator("AtoB")
    for bf16 in (False, True):
        precision = "bf16" if bf16 else "fp32"
        autocast = autocast_for(ctx.device, bf16)
        for batch in s.translate_batches:
            x = torch.rand(batch, 3, s.translate_size, s.translate_size, device=ctx.device) * 2 - 1
            rates.setdefault(f"network {precision}", {})[batch] = generator_rate(net, x, autocast, ctx.device,
                                                                                 s.translate_steps)
            with torch.inference_mode(), autocast():
                finite = finite and bool(torch.isfinite(net(x)).all())
        for batch in s.translate_batches:
            out = ctx.tmp / f"translated_{precision}_{batch}"
            rates.setdefault(f"folder {precision}", {})[batch] = folder_rate(run, images, out, str(ctx.device),
                                                                             batch, bf16=bf16)
    lines = [f"generator ngf {s.translate_model['ngf']}, n_blocks {s.translate_model['n_blocks']} (random weights), "
             f"{s.translate_size} px; folder: {s.translate_images} JPEGs -> PNGs; images/s at batch "
             f"{', '.join(map(str, s.translate_batches))}"]
    lines += [f"{name}: {', '.join(f'{rate:,.1f}' for rate in by_batch.values())}" for name, by_batch in rates.items()]
    best = max(rates["network bf16"].values())
    if ctx.cuda:
        lines.append(f"bf16 network alone, best batch: {best:,.0f} img/s (target >= {INFERENCE_TARGET:,}: "
                     f"{'met' if best >= INFERENCE_TARGET else 'MISSED'})")
    if not finite:
        lines.append("the generator's output was not finite")
    return judged(finite, lines, images_per_s=rates, bf16_best=best)


# --------------------------------------------------------------------------- 5. resume across devices

def _resume_leg(ctx: Context, data: Path, first: str, second: str, channels_last: bool) -> str:
    """Train one epoch on ``first``, resume for one more on ``second``; a line on the losses after the
    resume, or StepFailed."""
    from cyclegan import runfolder
    from cyclegan.config import Config, ModelConfig, TrainConfig
    from cyclegan.train.loop import merge_resume_config

    train_config = TrainConfig(domain_a=str(data / "trainA"), domain_b=str(data / "trainB"), load_size=36,
                               crop_size=32, batch_size=2, epochs=1, epochs_decay=0, device=first, eval_every=0,
                               log_every=1, pool_size=4, channels_last=channels_last)
    run = ctx.tmp / f"resume_{first}_{second}_{'cl' if channels_last else 'plain'}"
    quiet_train(Config(model=ModelConfig(**TINY_NETS), train=train_config, preset="gpu_check"), run)
    saved_step = runfolder.load_state(run)["step"]
    quiet_train(merge_resume_config(runfolder.load_config(run), {"device": second, "epochs_decay": 1}), run,
                resume=True)
    after = [row for row in runfolder.read_metrics(run) if row.get("step") and int(row["step"]) > saved_step]
    losses = [float(v) for row in after for k, v in row.items() if k.startswith("loss_") and v != ""]
    if not after or not all(map(math.isfinite, losses)):
        raise StepFailed(f"{len(after)} steps logged after the resume, losses {losses[:6]}")
    return f"{saved_step} + {len(after)} steps, loss_G after the resume {float(after[-1]['loss_G']):.3f}"


def step_resume_across_devices(ctx: Context) -> Row:
    from cyclegan.data.synthetic import make_dataset

    data = make_dataset(ctx.tmp / "resume_shapes", n_train=8, n_test=2, size=32)
    pairs = [("cpu", str(ctx.device)), (str(ctx.device), "cpu")] if ctx.cuda else [("cpu", "cpu")]
    lines, failed = [], []
    for first, second in pairs:
        for channels_last in (False, True):
            label = f"{first} -> {second}{' --channels-last' if channels_last else ''}"
            reset_device(ctx.device)
            try:
                lines.append(f"{label}: ok, {_resume_leg(ctx, data, first, second, channels_last)}")
            except Exception as exc:  # noqa: BLE001 - each leg is reported; the others still run
                traceback.print_exc()
                failed.append(label)
                lines.append(f"{label}: FAIL {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}")
    if not ctx.cuda:
        lines.append("saved and resumed on the CPU only: the cross-device legs (cpu -> cuda, cuda -> cpu) need CUDA")
    return judged(not failed, lines, failed=failed)


# --------------------------------------------------------------------------- 6. Translator, export, CUT

def run_exported(path: Path, fmt: str, image: torch.Tensor) -> torch.Tensor:
    """The exported generator applied to ``image`` by its own runtime: onnxruntime, or TorchScript's."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(["translated"], {"image": image.numpy()})[0])
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")  # deprecated, still served
        return torch.jit.load(str(path))(image)


def _export_diff(ctx: Context, family: str) -> tuple[float, float, int]:
    """A random run of ``family``'s generator: the exported AtoB generator against the Translator on the device."""
    from cyclegan.translate.export import export_generator
    from cyclegan.translate.translator import Translator

    s = ctx.scale
    run = random_run(ctx.tmp / f"export_run_{family}", s.translate_model["ngf"], s.translate_model["n_blocks"], family)
    translator = Translator.from_run(run, device=ctx.device)
    side = s.translate_size + 3  # not a multiple of 4: the padding is part of what is checked
    image = torch.rand(1, 3, side, side) * 2 - 1
    reference = translator.translate_tensor(image, "AtoB")  # on the device
    target = ctx.tmp / (f"G_AB_{family}.onnx" if s.export_format == "onnx" else f"G_AB_{family}.pt")
    exported = export_generator(run, "AtoB", target, fmt=s.export_format)
    diff = (run_exported(exported, s.export_format, image) - reference).abs()
    return float(diff.mean()), float(diff.max()), side


def _cut_steps(ctx: Context) -> list[float]:
    """Three CUT training steps on the device (bf16 autocast where the device takes it): their losses."""
    from cyclegan.config import preset, with_family
    from cyclegan.devices import chosen_autocast
    from cyclegan.train.cut_step import cut_train_step, step_generator
    from cyclegan.train.pool import ImagePool
    from cyclegan.train.step import Models, Optimizers

    s = ctx.scale
    config = preset("paper")
    config.model.ngf, config.model.n_blocks = s.translate_model["ngf"], s.translate_model["n_blocks"]
    config = with_family(config, "cut")
    models = Models.build(config, ctx.device)
    opt = Optimizers.build(models, config)
    autocast = chosen_autocast("auto", ctx.device)
    a, b = (torch.rand(1, 3, 64, 64, device=ctx.device) * 2 - 1 for _ in range(2))
    return [float(cut_train_step(models, opt, (ImagePool(0), ImagePool(0)), a, b, config, autocast,
                                 step_generator(0, i, 0))["loss_G"]) for i in range(3)]


def step_translator_export(ctx: Context) -> Row:
    s = ctx.scale
    runtime = "onnxruntime (CPU)" if s.export_format == "onnx" else "TorchScript (CPU)"
    lines, ok, data = [], True, {}
    for family in ("cyclegan", "cut"):
        mean, worst, side = _export_diff(ctx, family)
        ok = ok and mean < EXPORT_TOLERANCE
        data[f"{family}_mean_diff"], data[f"{family}_max_diff"] = mean, worst
        lines.append(f"{family}: Translator on {ctx.device}: {side}x{side} translated; {s.export_format} export run "
                     f"by {runtime} differs from it by {mean:.1e} on average, {worst:.1e} at most (the average must "
                     f"be < {EXPORT_TOLERANCE:g}: CUDA convolutions run in TF32 by default)")
    if s.export_format != "onnx":
        lines.append("ONNX left to the full check (its exporter alone outlasts a dry run; "
                     "tests/test_translate_export.py runs it)")
    losses = _cut_steps(ctx)
    finite = all(math.isfinite(v) for v in losses)
    lines.append(f"CUT: 3 training steps on {ctx.device}, loss_G " + ", ".join(f"{v:.3f}" for v in losses)
                 + ("" if finite else " (NaN/inf)"))
    return judged(ok and finite, lines, export_format=s.export_format, cut_losses=losses, **data)


# --------------------------------------------------------------------------- 7. profile

def step_profile(ctx: Context) -> Row:
    s = ctx.scale
    trace = ctx.out / "profile_trace.json"
    r = measure(s.train_size, ctx.device.type, amp=ctx.cuda, steps=1, warmup=s.train_warmup, fast=True, batch=1,
                cache=True, model=s.train_model, compiled=s.compiled, profile=True, trace=str(trace))
    with open(trace, "rb") as raw, gzip.open(f"{trace}.gz", "wb") as packed:
        shutil.copyfileobj(raw, packed)
    trace.unlink()
    kind = "kernels" if ctx.cuda else "ops (CPU, by self time)"
    lines = [f"one fast-path step, batch 1, {s.train_size} px: {r['profiled_s'] * 1000:.1f} ms under the profiler; "
             f"trace {trace.name}.gz; top {len(r['kernels'])} {kind}:"]
    lines += [f"  {k['share']:6.1%} {k['ms']:9.3f} ms {k['calls']:5d}x  {k['name'][:90]}" for k in r["kernels"]]
    share = r["launch_share"]
    lines.append(f"kernel launches (cudaLaunchKernel and kin, host self time): {share:.1%} of the step" if share
                 is not None else "launch share: n/a (no CUDA)")
    return judged(bool(r["kernels"]), lines, kernels=r["kernels"], launch_share=share)


STEPS: dict[int, tuple[str, Callable[[Context], Row]]] = {
    1: ("pytest -m cuda", step_cuda_tests),
    2: ("training speed", step_training_speed),
    3: ("quality parity", step_quality_parity),
    4: ("translation", step_translation),
    5: ("resume across devices", step_resume_across_devices),
    6: ("translator, export, CUT", step_translator_export),
    7: ("profile", step_profile),
}


# --------------------------------------------------------------------------- the table

def header(ctx: Context, quick: bool) -> str:
    cuda = torch.version.cuda or "none"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        device = (f"{ctx.device} = {p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, "
                  f"sm_{p.major}{p.minor})")
    else:
        device = "cpu"
    return (f"GPU check {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' (--quick)' if quick else ''}: "
            f"device {device}; torch {torch.__version__}, CUDA {cuda}, cuDNN {cudnn}; Python "
            f"{platform.python_version()}\nmachine: {machine()}")


def format_row(row: Row) -> str:
    first, *rest = row.lines or [""]
    text = f"{row.step:<27} {row.status:<8} {row.seconds:7.1f}  {first}"
    return "\n".join([text] + [f"{'':<45}{line}" for line in rest])


def save(out: Path, lines: list[str], rows: list[Row]) -> None:
    (out / "table.txt").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps([asdict(row) for row in rows], indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for the dry run")
    parser.add_argument("--quick", action="store_true", help="tiny settings: every step in under a minute")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "gpu_check"),
                        help="folder for table.txt, results.json and the trace (default: %(default)s)")
    parser.add_argument("--only", help="comma-separated step numbers to run (default: all seven)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here; the dry run is --device cpu --quick")
    chosen = sorted({int(n) for n in args.only.split(",") if n.strip().isdigit()}) if args.only else sorted(STEPS)
    if not chosen or not set(chosen) <= set(STEPS):
        parser.error(f"--only takes step numbers from 1 to {len(STEPS)} separated by commas, got {args.only!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = Context(device, QUICK if args.quick else FULL, out, Path(tmp))
        lines = [header(ctx, args.quick), f"{'step':<27} {'status':<8} {'seconds':>7}  figures"]
        print("\n".join(lines), flush=True)
        for number in chosen:
            rows.append(run_step(number, ctx))
            lines.append(format_row(rows[-1]))
            print(lines[-1], flush=True)
            save(out, lines, rows)  # after every step: a run killed at its time limit keeps what it reached
    failed = [row.step for row in rows if row.status == "FAIL"]
    lines.append(f"FAILED: {'; '.join(failed)}" if failed else f"all {len(rows)} steps passed or skipped")
    print(lines[-1], flush=True)
    save(out, lines, rows)
    return 1 if failed else 0



if __name__ == "__main__":
    sys.exit(main())
