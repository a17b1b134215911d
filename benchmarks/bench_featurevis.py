"""Figures for lecture 01 (activation maximisation), from one run on the CPU.

    .venv/bin/python benchmarks/bench_featurevis.py

Prints, for the course CNNs (digits, shapes), with ``featurevis.course_settings``:
  1. per class: the optimised input's logit vs the best real image's logit (the reference:
     argmax over the dataset, i.e. ``top_activating_examples(k=1)``), and their ratio;
  2. the recommended TV weight against no regularisation: TV drop and activation kept;
  3. the time for one 10-class grid (digits) / 4-class grid (shapes) on the CPU, batched as in
     the package vs one class at a time (the naive loop), and the ratio.
"""

import torch

from xaicourse import featurevis as fv
from xaicourse.models import course_model
from _common import best_of



def main():
    dev = "cpu"
    print(f"torch {torch.__version__}, device {dev}, threads {torch.get_num_threads()}")
    for name in ("digits", "shapes"):
        model, split, _ = course_model(name, progress=False, device=dev)
        data = torch.cat([split.X_train, split.X_test])
        st = fv.course_settings(name, device=dev)
        classes = list(range(split.n_classes))
        print(f"\n== {name} CNN: {split.n_classes} classes, input {split.image_shape}, "
              f"settings p={st['p']} radius={st['radius']} center={st['center']} n_steps={st['n_steps']} "
              f"lr={st['lr']} recommended tv_weight={st['tv_weight']}")
        plain = fv.activation_maximization(model, classes, split.image_shape, **{**st, "tv_weight": 0.0})
        reg = fv.activation_maximization(model, classes, split.image_shape, **st)

        print(f"{'class':>10} {'best real':>10} {'optimised':>10} {'ratio':>7} {'opt+TV':>9} {'ratio':>7}")
        ratios, ratios_tv = [], []
        for c in classes:
            _, best = fv.top_activating_examples(model, c, data, k=1, device=dev)
            r0, r1 = (plain.final_objective[c] / best[0]).item(), (reg.final_objective[c] / best[0]).item()
            ratios.append(r0)
            ratios_tv.append(r1)
            print(f"{split.class_names[c]:>10} {best[0].item():10.2f} {plain.final_objective[c].item():10.2f} "
                  f"{r0:7.2f} {reg.final_objective[c].item():9.2f} {r1:7.2f}")
        print(f"ratio optimised/best-real: min {min(ratios):.2f}, mean {sum(ratios) / len(ratios):.2f} "
              f"(with TV: min {min(ratios_tv):.2f})")

        tv_kept = reg.final_tv / plain.final_tv
        act_kept = reg.final_objective / plain.final_objective
        print(f"TV weight {st['tv_weight']}: TV {plain.final_tv.mean():.1f} -> {reg.final_tv.mean():.1f} "
              f"(drop {1 - tv_kept.mean():.1%}, per class min {1 - tv_kept.max():.1%}); "
              f"activation kept {act_kept.mean():.1%} (per class min {act_kept.min():.1%}); "
              f"real images' median TV {fv.total_variation(split.X_train).median():.1f}")

        t_batch, _ = best_of(lambda: fv.activation_maximization(model, classes, split.image_shape, **st))
        t_loop, _ = best_of(lambda: [fv.activation_maximization(model, c, split.image_shape, **st) for c in classes],
                          repeats=1)
        print(f"time for one {len(classes)}-class grid ({st['n_steps']} steps, CPU): batched {t_batch:.3f} s, "
              f"one class at a time {t_loop:.3f} s, ratio {t_loop / t_batch:.1f}x")


if __name__ == "__main__":
    main()
