"""Lecture 04b panels: propagation rules and internal influence.

* ``propagation_panel`` — image + rule (DeepLIFT rescale, LRP-ε, LRP-0, LRP-z⁺, w² at the input)
  + ε → the input, the map (symmetric colour limits: white is 0), and a readout of how much of
  the output the map accounts for (Σ R against f(x) or f(x) − f(x′)).
* ``influence_panel`` — layer + distribution of interest (one image, the line from the black
  image, every image of class A) + quantity of interest (f_A or f_A − f_B) → the influence of
  each unit of the layer (channels summed over space) and the top units in the readout.
Both compute on ``current_device()`` (the device toggle) and leave the model where it was.
Every panel's ``state`` holds the numbers it drew.
"""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from .._torch import eval_on
from ..attribution.internal import internal_influence
from ..attribution.propagation import LRP_EPSILON, deeplift, lrp
from ..device import current_device
from ._panel import Panel

__all__ = ["propagation_panel", "influence_panel", "PROPAGATION_RULES", "DISTRIBUTIONS"]

# label shown → value used
PROPAGATION_RULES = {"DeepLIFT (rescale, black baseline)": "deeplift", "LRP-ε": "lrp_epsilon",
                     "LRP-0 (= input × gradient)": "lrp_0", "LRP-z⁺": "lrp_zplus",
                     "LRP: w² at the input, ε above": "lrp_wsquare"}
DISTRIBUTIONS = {"this image (point)": "point", "line from the black image": "line",
                 "every image of class A": "set"}
QUANTITIES = {"f_A (class A's logit)": "class", "f_A − f_B (why A rather than B?)": "comparative"}


def _signed(ax, a, title):
    a = a.detach().cpu()
    a = a.sum(0) if a.dim() == 3 else a
    m = float(a.abs().max()) or 1.0
    ax.imshow(a.numpy(), cmap="seismic", vmin=-m, vmax=m)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _image(ax, x, title):
    a = x.detach().cpu()
    a = a.permute(1, 2, 0) if a.shape[0] == 3 else a[0]
    ax.imshow(a.numpy().clip(0, 1), cmap="gray" if a.dim() == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _propagate(model, x, target, rule, epsilon):
    """(map, Σ R, what Σ R should equal for a conserving rule, the name of that quantity)."""
    with torch.no_grad():
        f = float(model(x)[0, target])
        f0 = float(model(torch.zeros_like(x))[0, target])
    if rule == "deeplift":
        a = deeplift(model, x, target)
        return a, float(a.sum()), f - f0, "f(x) − f(0)"
    kw = {"lrp_epsilon": dict(epsilon=epsilon), "lrp_0": dict(epsilon=0.0), "lrp_zplus": dict(rule="zplus"),
          "lrp_wsquare": dict(epsilon=epsilon, input_rule="wsquare")}[rule]
    a = lrp(model, x, target, **kw)
    return a, float(a.sum()), f, "f(x)"


def propagation_panel(model, inputs: torch.Tensor, targets, epsilon: float = LRP_EPSILON):
    """Image index + rule + ε → the map and Σ R vs f(x) (LRP) or f(x) − f(0) (DeepLIFT).

    inputs: (N, C, H, W) images; targets: their classes (N ints, the class explained)."""
    targets = [int(t) for t in torch.as_tensor(targets).reshape(-1)]
    if len(targets) != len(inputs):
        raise ValueError(f"targets must give one class per image: {len(targets)} for {len(inputs)} images")
    image = w.IntSlider(value=0, min=0, max=len(inputs) - 1, description="image")
    rule = w.Dropdown(options=list(PROPAGATION_RULES.items()), value="lrp_epsilon", description="rule")
    eps = w.FloatLogSlider(value=epsilon, base=10, min=-4, max=1, step=0.25, description="ε",
                           readout_format=".3g")

    def draw(image, rule, epsilon):
        dev = current_device()
        x, t = inputs[image:image + 1].to(dev), targets[image]
        with eval_on(model, to=dev):
            a, total, want, what = _propagate(model, x, t, rule, epsilon)
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        _image(axes[0], x[0], f"input (class {t})")
        label = next(k for k, v in PROPAGATION_RULES.items() if v == rule)
        _signed(axes[1], a[0], label + (f", ε = {epsilon:.3g}" if rule in ("lrp_epsilon", "lrp_wsquare") else ""))
        fig.tight_layout()
        kept = total / want if want else float("nan")
        readout = (f"Σ R = {total:.3f} &nbsp; {what} = {want:.3f} &nbsp; → the map accounts for "
                   f"{100 * kept:.1f} % of {what}")
        return {"image": image, "rule": rule, "epsilon": epsilon, "attribution": a[0].detach().cpu(),
                "sum": total, "reference": want, "kept": kept, "readout": readout}
    return Panel({"image": image, "rule": rule, "epsilon": eps}, draw, readout=True,
                 rows=[["image", "rule"], ["epsilon"]],
                 enabled_when={"epsilon": lambda v: v["rule"] in ("lrp_epsilon", "lrp_wsquare")})


def influence_panel(model, inputs: torch.Tensor, targets, layers=("conv2", "conv3", "fc1"), n_steps: int = 16,
                    top: int = 5):
    """Layer + distribution of interest + quantity of interest → per-unit influence.

    inputs: (N, C, H, W) images, targets: their labels. Class A is the label of the chosen
    image; the class-wide distribution averages over every image of ``inputs`` with that label.
    Influence per unit: χ summed over the spatial positions of a channel (conv layers)."""
    targets = torch.as_tensor(targets).reshape(-1).long()
    if len(targets) != len(inputs):
        raise ValueError(f"targets must give one class per image: {len(targets)} for {len(inputs)} images")
    with torch.no_grad():
        k = model(inputs[:1].to(next(model.parameters()).device)).shape[1]
    layers = list(layers)
    if not layers:
        raise ValueError("layers must name at least one layer of the model")
    image = w.IntSlider(value=0, min=0, max=len(inputs) - 1, description="image")
    layer = w.Dropdown(options=layers, value=layers[-1], description="layer (slice f = g∘h)")
    dist = w.Dropdown(options=list(DISTRIBUTIONS.items()), value="point", description="distribution")
    quantity = w.Dropdown(options=list(QUANTITIES.items()), value="class", description="quantity")
    other = w.IntSlider(value=(int(targets[0]) + 1) % k, min=0, max=k - 1, description="class B")

    def draw(image, layer, distribution, quantity, contrast):
        dev = current_device()
        A_cls = int(targets[image])
        c = contrast if quantity == "comparative" else None
        if c == A_cls:
            c = None                           # f_A − f_A = 0: nothing to explain
        if distribution == "set":
            x = inputs[targets == A_cls].to(dev)
        else:
            x = inputs[image:image + 1].to(dev)
        with eval_on(model, to=dev):
            kw = dict(n_steps=n_steps) if distribution == "line" else {}
            infl = internal_influence(model, x, A_cls, layer=layer, distribution=distribution, contrast=c, **kw)[0]
        per_unit = (infl.flatten(1).sum(1) if infl.dim() > 1 else infl).detach().cpu()
        order = per_unit.argsort(descending=True)[:top].tolist()
        fig, ax = plt.subplots(figsize=(7, 2.8))
        ax.bar(range(len(per_unit)), per_unit.numpy(), color="gray")
        ax.bar(order, per_unit[order].numpy(), color="crimson")
        ax.axhline(0, color="k", lw=0.5)
        q = f"f_{A_cls}" + (f" − f_{c}" if c is not None else "")
        over = f"{len(x)} images of class {A_cls}" if distribution == "set" else f"image {image}"
        ax.set_title(f"influence of the {layer} units on {q} ({distribution}, {over})", fontsize=9)
        ax.set_xlabel("unit")
        fig.tight_layout()
        note = " (class B = class A: explaining f_A alone)" if quantity == "comparative" and c is None else ""
        readout = f"top units for {q}: {order} &nbsp; distribution: {over}{note}"
        return {"layer": layer, "distribution": distribution, "quantity": quantity, "class_a": A_cls, "contrast": c,
                "n_images": len(x), "influence": per_unit, "top_units": order, "readout": readout}
    return Panel({"image": image, "layer": layer, "distribution": dist, "quantity": quantity, "contrast": other},
                 draw, readout=True, rows=[["image", "layer"], ["distribution", "quantity", "contrast"]],
                 enabled_when={"contrast": lambda v: v["quantity"] == "comparative"})
