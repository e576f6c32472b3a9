"""CycleGAN (`paper`, `quality`), CUT and FastCUT on the style suite: speed side by side, quality
against the truth at equal iterations and at equal wall-clock, and how often `cyclegan compare`
picks the truly better run.

    python benchmarks/families.py --speed-only --size 256                     # s/iteration and peak memory
    python benchmarks/families.py --suite --size 64 --ngf 16 --n-blocks 3 --seeds 0 1 2

1. **Speed**, one fresh process per model and round, the models alternated over ``--rounds``: seconds
   per training iteration (both directions, batch 1) after a warm-up, and the process's peak memory
   (RSS on the CPU; peak allocated on CUDA), and the arithmetic of one iteration (torch's
   FlopCounterMode, forward and backward), which no machine's load changes. The same networks for
   all (the published ResNet and PatchGAN at ``--ngf``/``--n-blocks``; CUT's is its anti-aliased
   ResNet). CUT and FastCUT are also timed one way (``--one-way``: A->B alone), the way CUT's paper
   times them.
2. **Quality**: every model trained on every style and seed with benchmarks/quality.py's runner (runs
   are shared with it, and reused unless their best/ is not what today's rules keep; ``--styles``
   also takes ``shapes``, the embedded drawn dataset), scored on the test split against the ground
   truth: PSNR and L1 (last epoch), held-out SWD. At equal iterations, and at equal wall-clock: each
   model gets the iterations `paper` does in its time, by the speed ratios of step 1 (measured at
   the training size).
3. **compare**: for every style, seed, budget and pair of models, ``compare_runs`` picks
   one from held-out scores alone; counted right when it is the one with the lower ground-truth L1
   of the generators it would hand over (best/), among pairs whose L1 differs by more than the seeds' spread.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402  (the runner, datasets and scoring this benchmark shares)
import selection  # noqa: E402  (its replay of best/'s rule over a run's evaluations)

from cyclegan import runfolder  # noqa: E402
from cyclegan.config import preset, with_family  # noqa: E402
from cyclegan.evaluate.compare import compare_runs  # noqa: E402

MODELS = {"paper": "base", "quality": "quality", "cut": "cut", "fastcut": "fastcut"}  # -> quality.py variants
BUDGETS = ("equal iterations", "equal time")


ONE_WAY = ("cut_one_way", "fastcut_one_way")  # timed only: their quality has one direction to score


def model_config(name: str, size: int, ngf: int, n_blocks: int):
    """The config a model trains with at this size (as quality.py's runner builds it)."""
    family = name.removesuffix("_one_way")
    config = with_family(preset("quality" if name == "quality" else "paper"),
                         family if family in ("cut", "fastcut") else "cyclegan")
    config.model.ngf = config.model.ndf = ngf
    config.model.n_blocks = n_blocks
    config.model.one_way = name in ONE_WAY
    if family in ("cut", "fastcut"):
        config = with_family(config, family)  # the PatchNCE layers fitted to these blocks
    config.train.crop_size, config.train.batch_size = size, 1
    return config


def time_one(name: str, size: int, ngf: int, n_blocks: int, steps: int, device: str) -> dict[str, float]:
    """In this process: seconds per training iteration of model ``name`` and the peak memory (MB)."""
    from cyclegan.devices import chosen_autocast
    from cyclegan.train.cut_step import cut_train_step, step_generator
    from cyclegan.train.pool import ImagePool
    from cyclegan.train.step import Models, Optimizers, train_step

    config = model_config(name, size, ngf, n_blocks)
    dev = torch.device(device)
    torch.manual_seed(0)
    models = Models.build(config, dev)
    opt = Optimizers.build(models, config)
    pools = (ImagePool(config.train.pool_size, 1), ImagePool(config.train.pool_size, 2))
    autocast = chosen_autocast("off", dev)
    a, b = (torch.rand(1, 3, size, size, device=dev) * 2 - 1 for _ in range(2))

    def step(i: int) -> None:
        if config.model.family == "cyclegan":
            train_step(models, opt, pools, a, b, config, autocast)
        else:
            cut_train_step(models, opt, pools, a, b, config, autocast, step_generator(0, i, 0))

    step(0)  # warm-up: first-call allocations, pool filling
    with FlopCounterMode(display=False) as flops:  # the second warm-up step, untimed, counts the arithmetic
        step(1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for i in range(steps):
        step(i + 2)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {"seconds": (time.perf_counter() - started) / steps, "peak_mb": peak, "gflop": flops.get_total_flops() / 1e9}


def measure_speed(names: list[str], size: int, ngf: int, n_blocks: int, steps: int, rounds: int,
                  device: str) -> dict[str, dict[str, float]]:
    """Each model in its own process, alternated over ``rounds``; the median per model."""
    seen: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--time-one", name, "--size", str(size), "--ngf", str(ngf),
                                  "--n-blocks", str(n_blocks), "--steps", str(steps), "--device", device],
                                 capture_output=True, text=True, check=True, env={**os.environ})
            seen[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]} for name, rows in seen.items()}


def print_speed(speed: dict[str, dict[str, float]], size: int, ngf: int, n_blocks: int, device: str) -> None:
    print(f"\n== speed: {size} px, ngf {ngf}, {n_blocks} blocks, batch 1, both directions, {device}")
    base = speed["paper"]["seconds"]
    # The arithmetic beside the time: where a model's time ratio exceeds its FLOP ratio, the excess is
    # how its layers run on this device (CUT's depthwise blurs), not how much they compute.
    base_flop = speed["paper"].get("gflop")
    print(f"{'model':<16}{'s/iteration':>13}{'x paper':>9}{'peak MB':>10}{'GFLOP/it':>10}{'x paper':>9}")
    for name, row in speed.items():
        flop = (f"{row['gflop']:>10.2f}{row['gflop'] / base_flop:>9.2f}" if base_flop and "gflop" in row
                else f"{'-':>10}{'-':>9}")  # a speed cache written before FLOPs were counted
        print(f"{name:<16}{row['seconds']:>13.3f}{row['seconds'] / base:>9.2f}{row['peak_mb']:>10.0f}{flop}")


def best_is_stale(run: Path) -> bool:
    """Whether a finished run's best/ is not the epoch today's rules keep: runs are reused across
    sessions, and one trained before a selection rule changed would otherwise be compared, and scored
    against the truth, by a choice the tool no longer makes. The rule is replayed over the run's
    evaluations (benchmarks/selection.py), as training would run it now."""
    meta = run / "best" / "meta.json"
    if not (run / "bench.json").exists() or not meta.exists():
        return False
    rows = [r for r in runfolder.read_metrics(run) if r.get("val_swd")]
    selection.fill_domain_gap(rows, run)
    rule = runfolder.load_config(run).train.select_by
    return json.loads(meta.read_text())["epoch"] != selection.choose(rows, rule)


def scores(run: Path, data: Path) -> tuple[dict, dict]:
    """The last epoch's and best/'s scores against the truth, kept in the run folder (scores.json): a
    finished run never changes, and scoring one takes about a minute on 2 cores, so the summary of a
    whole suite reads them back instead of scoring again."""
    cache = run / "scores.json"
    if cache.exists():
        kept = json.loads(cache.read_text())
        return kept["last"], kept["best"]
    last, best = quality.score(run, data, best=False), quality.score(run, data, best=True)
    cache.write_text(json.dumps({"last": last, "best": best}))
    return last, best


def mean_sd(values: list[float]) -> str:
    return quality.spread(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-one", help=argparse.SUPPRESS)  # the child process of the speed step
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--styles", nargs="+", choices=[*quality.SUITE, "shapes"], default=["grade"],
                        help="photo styles of the suite, or shapes (the embedded drawn dataset)")
    parser.add_argument("--suite", action="store_true", help="every photo style of the suite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--n-blocks", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--steps", type=int, default=10, help="timed iterations per speed measurement")
    parser.add_argument("--rounds", type=int, default=2, help="speed measurements per model, alternated")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--speed-only", action="store_true", help="only step 1")
    parser.add_argument("--budgets", nargs="+", choices=BUDGETS, default=list(BUDGETS),
                        help="train at equal iterations, at equal wall-clock, or both")
    parser.add_argument("--out", type=Path, default=Path("/tmp/quality"))
    args = parser.parse_args()
    if args.time_one:
        print(json.dumps(time_one(args.time_one, args.size, args.ngf, args.n_blocks, args.steps, args.device)))
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    logging.getLogger("cyclegan.evaluate.health").setLevel(logging.ERROR)  # the replayed warnings (best_is_stale)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    # Kept under --out: the equal-time budgets come from these ratios, so later invocations (other
    # styles, more seeds) reuse the same budgets, and with them the same runs. Delete it to re-measure.
    cache = args.out / f"speed-{args.device}-{args.size}px-ngf{args.ngf}-b{args.n_blocks}.json"
    models = (["paper"] if "paper" not in args.models else []) + args.models  # a new list: args.models stays as given
    models += [f"{name}_one_way" for name in ("cut", "fastcut") if name in args.models]  # --one-way's speed
    if cache.exists() and not args.speed_only:
        speed = json.loads(cache.read_text())
        print(f"speed as measured earlier ({cache}; delete it to measure again)")
    else:
        speed = measure_speed(models, args.size, args.ngf, args.n_blocks, args.steps, args.rounds, args.device)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(speed))
    print_speed(speed, args.size, args.ngf, args.n_blocks, args.device)
    if args.speed_only:
        return 0

    runner = argparse.Namespace(base="paper", every_epoch=True, size=args.size, ngf=args.ngf, n_blocks=args.n_blocks,
                                iterations=args.iterations)
    label = f"-paper-ngf{args.ngf}-b{args.n_blocks}-it{args.iterations}-every"
    styles = list(quality.SUITE) if args.suite else args.styles
    rows: dict[tuple[str, str, str], dict[int, dict]] = {}  # (style, model, budget) -> seed -> scores
    for style in styles:
        data = quality.dataset("shapes" if style == "shapes" else "photos", args.out, args.size, style)
        for name, seed in itertools.product(args.models, args.seeds):
            equal_time = round(args.iterations * speed["paper"]["seconds"] / speed[name]["seconds"])
            if abs(equal_time - args.iterations) <= 0.05 * args.iterations:
                equal_time = args.iterations  # within 5%: one run stands for both budgets
            budgets = {b: n for b, n in zip(BUDGETS, (args.iterations, equal_time)) if b in args.budgets}
            for budget, iterations in budgets.items():
                variant = MODELS[name] + ("" if iterations == args.iterations else f"_it{iterations}")
                overrides = {**quality.VARIANTS[MODELS[name]], "iterations": iterations}
                run = args.out / "runs" / f"{data.name}{label}-{variant}-seed{seed}"
                if best_is_stale(run):
                    print(f"{run.name}: best/ is not what today's rules keep; training it again", flush=True)
                    run.unlink() if run.is_symlink() else shutil.rmtree(run)  # a link: the run is another variant's
                quality.train_variant(data, run, runner, overrides, seed)
                last, chosen = scores(run, data)
                rows.setdefault((style, name, budget), {})[seed] = {"run": run, "last": last, "best": chosen}
                print(f"{style} {name} {budget} ({iterations} it) seed {seed}: " + "; ".join(
                    f"{d} PSNR {v['psnr']:.2f} L1 {v['l1']:.4f} SWD {v['swd']:.1f}" for d, v in last.items()),
                    flush=True)
    print_tables(rows, styles, args.models)
    print_compare_accuracy(rows, styles, args.models, args.seeds)
    return 0


def print_tables(rows: dict, styles: list[str], models: list[str]) -> None:
    for budget in ("equal iterations", "equal time"):
        print(f"\n== {budget}: PSNR A->B / B->A (dB), L1 A->B / B->A, held-out SWD mean; mean ± sd over seeds; "
              "training seconds (mean)")
        gains = []
        for style in styles:
            best_psnr, paper_psnr = None, None
            for name in models:
                seeds = rows.get((style, name, budget))
                if not seeds:
                    continue
                cells = []
                for key in ("psnr", "l1"):
                    cells += [mean_sd([s["last"][d][key] for s in seeds.values()]) for d in ("AtoB", "BtoA")]
                swd = mean_sd([statistics.fmean(s["last"][d]["swd"] for d in ("AtoB", "BtoA")) for s in seeds.values()])
                psnr = statistics.fmean(statistics.fmean(s["last"][d]["psnr"] for d in ("AtoB", "BtoA"))
                                        for s in seeds.values())
                paper_psnr = psnr if name == "paper" else paper_psnr
                best_psnr = psnr if best_psnr is None else max(best_psnr, psnr)
                # The wall-clock each actually trained: budgets are whole epochs, so "equal time" is near, not exact
                seconds = statistics.fmean(json.loads((r["run"] / "bench.json").read_text())["seconds"]
                                           for r in seeds.values())
                print(f"{style:<10}{name:<9}{cells[0]:>14} / {cells[1]:<14}{cells[2]:>16} / {cells[3]:<16} SWD {swd}"
                      f"  trained {seconds:.0f} s")
            if best_psnr is not None and paper_psnr is not None:
                gains.append(best_psnr - paper_psnr)
        if gains:
            print(f"best model per style over paper, mean of both directions, averaged over styles: "
                  f"{statistics.fmean(gains):+.2f} dB")


def print_compare_accuracy(rows: dict, styles: list[str], models: list[str], seeds: list[int]) -> None:
    """How often compare's pick (held-out scores only) has the lower ground-truth L1 (of best/), over
    every pair of runs on the same style and seed within one budget (a pair shared by both budgets,
    such as paper and quality, counts once)."""
    right = counted = ties = 0
    seen: set[tuple[str, str]] = set()

    def truth(r: dict) -> float:
        return statistics.fmean(r["best"][d]["l1"] for d in ("AtoB", "BtoA"))

    for style, budget in itertools.product(styles, BUDGETS):
        for x, y in itertools.combinations(models, 2):
            rx, ry = rows.get((style, x, budget)), rows.get((style, y, budget))
            if not rx or not ry:
                continue
            spread = max((statistics.stdev([truth(r) for r in runs.values()]) if len(runs) > 1 else 0.0)
                         for runs in (rx, ry))
            for seed in seeds:
                if seed not in rx or seed not in ry or (rx[seed]["run"].name, ry[seed]["run"].name) in seen:
                    continue
                seen.add((rx[seed]["run"].name, ry[seed]["run"].name))
                lx, ly = truth(rx[seed]), truth(ry[seed])
                if abs(lx - ly) <= spread:
                    continue
                comparison = compare_runs([rx[seed]["run"], ry[seed]["run"]])
                truly = rx[seed]["run"].name if lx < ly else ry[seed]["run"].name
                counted += 1
                right += comparison.pick is not None and comparison.pick.name == truly
                ties += "a tie" in comparison.reason
                print(f"compare {style} {budget} {x} vs {y} seed {seed}: picks "
                      f"{comparison.pick.name if comparison.pick else '-'} "
                      f"({'right' if comparison.pick and comparison.pick.name == truly else 'wrong'}; truth L1 "
                      f"{lx:.4f} vs {ly:.4f}){' [tie]' if 'a tie' in comparison.reason else ''}")
    if counted:
        print(f"\ncompare picked the truly better run in {right} of {counted} pairs ({right / counted:.0%}) that differ "
              f"by more than the seeds' spread; {ties} of them it called a tie (picking the lower score anyway)")


if __name__ == "__main__":
    sys.exit(main())
