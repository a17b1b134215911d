"""The bad-input probe of the public API (issue #25): counts per outcome and per module, then every
raw and silent probe. ``python benchmarks/probe_api.py [group ...] [--report PATH]``.

Groups: attribution, data_attribution, evaluation, concepts, robustness, featurevis, tsne, data,
constraints, maps, viz, models (default: all). The probe itself lives in ``tests/probe_api.py``.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import probe_api  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("groups", nargs="*", help=f"any of {', '.join(probe_api.SPEC_GROUPS)}")
    ap.add_argument("--report", help="also write the markdown report here")
    ap.add_argument("--all", action="store_true", help="list the clear and sensible probes too")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = probe_api.run(args.groups or None)
    dt = time.perf_counter() - t0
    total, per = probe_api.summarise(results)
    print(f"{len(results)} probes in {dt:.0f} s: " + ", ".join(f"{v} {k}" for k, v in total.items()))
    print()
    w = max(len(m) for m in per) if per else 10
    print(f"{'module':<{w}}  clear sensible   raw silent missing")
    for m, c in sorted(per.items()):
        print(f"{m:<{w}}  {c['clear']:>5} {c['sensible']:>8} {c['raw']:>5} {c['silent']:>6} {c['missing']:>7}")
    for cls in ("silent", "raw", "missing") + (("clear", "sensible") if args.all else ()):
        rows = [r for r in results if r.outcome == cls]
        print(f"\n{cls.upper()} ({len(rows)})")
        for r in sorted(rows, key=lambda r: (r.module, r.function, r.argument)):
            print(f"  {r.module}.{r.function}  {r.argument} = <{r.mutation}>  [{r.expect}]  {r.detail[:160]}")
    slow = sorted(results, key=lambda r: -r.seconds)[:5]
    print("\nslowest: " + ", ".join(f"{r.function}/{r.mutation} {r.seconds:.1f}s" for r in slow))
    if args.report:
        Path(args.report).write_text(probe_api.report_markdown(results, dt))
    return results


if __name__ == "__main__":
    main()
