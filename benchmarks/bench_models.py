"""Course CNN: test accuracy and training time on digits and shapes, next to the targets
(≥ 0.95 accuracy, < 30 s) and to scikit-learn's MLPClassifier on the same digits split.

    python benchmarks/bench_models.py
Trains from scratch (cache disabled). One run, figures side by side.
"""
import time

import torch
from sklearn.neural_network import MLPClassifier

from xaicourse import data, models

TARGET_S = 30.0


def main():
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'dataset':8s} {'ours acc':>9s} {'ours s':>8s} {'s / 30 s target':>16s}")
    for ds in ("digits", "shapes"):
        t0 = time.perf_counter()
        r = models.COURSE_RECIPES[ds]
        split = data.load_digits_tensors() if ds == "digits" else data.load_shapes_split(r["n_train"], r["n_test"])
        c = split.image_shape[0]
        m = models.SmallCNN(c, split.n_classes, width=r["width"])
        models.train(m, split.X_train, split.y_train, epochs=r["epochs"], lr=r["lr"],
                     batch_size=r["batch_size"], cache=False, progress=False)
        secs = time.perf_counter() - t0
        acc = models.accuracy(m, split.X_test, split.y_test)
        print(f"{ds:8s} {acc:9.3f} {secs:8.1f} {secs / TARGET_S:16.2f}")
        if ds == "digits":
            t0 = time.perf_counter()
            sk = MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0).fit(
                split.X_train.flatten(1).numpy(), split.y_train.numpy())
            sk_s = time.perf_counter() - t0
            sk_acc = sk.score(split.X_test.flatten(1).numpy(), split.y_test.numpy())
            print(f"{'':8s} reference sklearn MLPClassifier(64): acc {sk_acc:.3f} in {sk_s:.1f} s "
                  f"(ours/ref time {secs / sk_s:.2f}x)")


if __name__ == "__main__":
    main()
