"""Engine benchmark: what iteration costs on the poster workflow, and op throughput.

    python bench/engine.py [--quick]     → bench/results/engine.json

1. Full run (fresh store) vs unchanged rerun (target ≤ 2 % of full) vs rerun after a change
   to the terminal node (target ≤ 10 %), all in one process after a warm-up run — measured
   twice: with the per-file provenance extras off (what the engine itself costs) and on
   (every written file gets a RivaGAN watermark and a signed C2PA manifest, ~1–2 s a file).
2. Op throughput at 4096×4096 vs the same operation in Pillow/OpenCV (bench/ops_throughput.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import carried_over, scratch_dir, timed, write_result  # noqa: E402

from strata.store import Store  # noqa: E402
from strata.workflow.executor import Executor  # noqa: E402
from strata.workflow.spec import load_workflow  # noqa: E402
from strata.workflow.validate import validate  # noqa: E402

POSTER = Path(__file__).resolve().parents[1] / "examples" / "poster.yaml"


def terminal_node(plan) -> str:
    consumed = {s.node for pn in plan.nodes for s in pn.sources()}
    terminals = [pn.node.id for pn in plan.nodes if pn.node.id not in consumed]
    return terminals[-1]


def iteration_costs(repeats: int) -> dict:
    wf = load_workflow(POSTER)
    plan = validate(wf)
    last = terminal_node(plan)
    tmp = scratch_dir("strata-bench-")
    out = tmp / "out"
    counter = iter(range(10**6))

    def full() -> None:
        store = Store(tmp / f"store-{next(counter)}")
        result = Executor(store).run(plan, out_dir=out)
        assert len(result.executed) == len(plan.nodes), result

    warm_store = Store(tmp / "warm")
    Executor(warm_store).run(plan, out_dir=out)

    def unchanged() -> None:
        result = Executor(warm_store).run(validate(wf), out_dir=out)
        assert result.executed == [], result.executed

    # A new value each time, so every repetition really reruns the terminal node.
    param = "strength" if "strength" in plan.node(last).params else next(iter(plan.node(last).params))
    base = float(plan.node(last).params[param])
    values = iter(base - 0.001 * (i + 1) for i in range(10**6))

    def terminal_change() -> None:
        result = Executor(warm_store).run(validate(wf.with_param(last, param, next(values))), out_dir=out)
        assert result.executed == [last], result.executed

    t_full = timed(full, repeats=repeats, warmup=1)
    t_unchanged = timed(unchanged, repeats=max(5, repeats * 2), warmup=1)
    t_terminal = timed(terminal_change, repeats=max(5, repeats), warmup=1)
    ratio_unchanged = t_unchanged["median_s"] / t_full["median_s"]
    ratio_terminal = t_terminal["median_s"] / t_full["median_s"]
    return {
        "workflow": str(POSTER.name),
        "nodes": len(plan.nodes),
        "terminal_change": f"{last}.{param}",
        "full_run": t_full,
        "unchanged_rerun": t_unchanged,
        "terminal_rerun": t_terminal,
        "unchanged_over_full": round(ratio_unchanged, 4),
        "terminal_over_full": round(ratio_terminal, 4),
        "targets": {"unchanged_over_full": 0.02, "terminal_over_full": 0.10},
        "meets_targets": {"unchanged": ratio_unchanged <= 0.02, "terminal": ratio_terminal <= 0.10},
    }


def with_extras(enabled: bool, repeats: int) -> dict:
    import os

    saved = {k: os.environ.get(k) for k in ("STRATA_SIGN", "STRATA_WATERMARK")}
    for k in saved:
        os.environ[k] = "1" if enabled else "0"
    try:
        return iteration_costs(repeats)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, ops at 1024² (a smoke run)")
    parser.add_argument("--skip-ops", action="store_true",
                        help="only the iteration costs; the op throughput is carried over from the last full run")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    data = {"iteration": with_extras(False, repeats), "iteration_with_watermark_and_c2pa": with_extras(True, repeats)}
    for label, it in (("engine", data["iteration"]), ("with watermark + C2PA", data["iteration_with_watermark_and_c2pa"])):
        print(f"poster ({label}): full {it['full_run']['median_s']:.3f} s, unchanged rerun "
              f"{it['unchanged_rerun']['median_s']:.4f} s ({it['unchanged_over_full']:.1%}), terminal change "
              f"{it['terminal_rerun']['median_s']:.3f} s ({it['terminal_over_full']:.1%})")
    if args.skip_ops:
        data["ops"] = carried_over("engine", "ops")
    else:
        from ops_throughput import measure_ops

        data["ops"] = measure_ops(size=1024 if args.quick else 4096, repeats=2 if args.quick else 3)
    path = write_result("engine", data)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
