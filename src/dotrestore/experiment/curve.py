"""The perception–distortion curve of an experiment (matplotlib, Agg): ``pd_curve.png`` / ``.svg``.

One main panel (the first perception column, normally ``latent_fd``) framed on x* and the DOT
points, where the trade-off happens; the degraded input y, usually far away, is an arrow at the
frame's edge with its numbers, so it cannot squash the curve. The other perception columns are
smaller panels beside it. α labels are placed so that no two overlap; one legend for all.
Every mark carries an SVG id (``gid``), so the vector file says what is marked where.
"""

from __future__ import annotations

from pathlib import Path

from ..io.files import atomic_write

TITLES = {"latent_fd": "latent FD (codec patches)", "patch_fd": "patch FD (7×7 RGB patches)",
          "spectrum_distance": "high-frequency spectrum distance", "halo_measure": "halo measure (edge overshoot)"}
COLOURS = ("tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:cyan")
#: candidate offsets (points) of an α label from its point, tried in order until one overlaps nothing
LABEL_OFFSETS = ((6, 4), (6, -13), (-18, 4), (-18, -13), (0, 9), (0, -17), (12, -5), (-26, -5), (14, 10),
                 (-30, 10), (14, -20), (-30, -20)) + tuple((2 * x, 2 * y) for x, y in (
                 (6, 4), (6, -13), (-18, 4), (-18, -13), (0, 9), (0, -17), (12, -5), (-26, -5)))
PAD = 0.12  # of the framed span, on each side


def is_dot(method: str) -> bool:
    """True for the rows of a DOT variant (``dot-detail``, ``dot-whole``, ``dot-mix4``...)."""
    return method == "dot" or method.startswith("dot-")


def lowest_mse_alpha(rows: list[dict], method: str) -> float | None:
    """The α of ``method``'s row with the lowest MSE: where the perception–distortion trade-off starts.

    For an MMSE restorer that is α = 1 (x* itself); from it towards α = 0 MSE rises while
    perception improves. None when the method has no rows.
    """
    dot = [r for r in rows if r["method"] == method and r.get("mse") is not None]
    return min(dot, key=lambda r: (r["mse"], -r["alpha"]))["alpha"] if dot else None


def _limits(values: list[float], log: bool) -> tuple[float, float]:
    import math

    if log:
        lo, hi = math.log10(min(values)), math.log10(max(values))
        span = max(hi - lo, 1e-3)
        return 10 ** (lo - PAD * span), 10 ** (hi + PAD * span)
    lo, hi = min(values), max(values)
    span = max(hi - lo, 1e-12, abs(hi) * 1e-3)
    return lo - PAD * span, hi + PAD * span


def _frame(ax, curves: dict, others: dict, key: str, small: bool = False) -> None:
    """Axis limits (and log scales) from the DOT points and x* only; y is left out on purpose."""
    from matplotlib.ticker import FuncFormatter

    framed = [r for dot in curves.values() for r in dot] + ([others["restored"]] if "restored" in others else [])
    for axis, field, set_scale, set_lim in ((ax.xaxis, "mse", ax.set_xscale, ax.set_xlim),
                                            (ax.yaxis, key, ax.set_yscale, ax.set_ylim)):
        values = [r[field] for r in framed]
        log = all(v > 0 for v in values) and max(values) / min(values) > 10
        if log:
            set_scale("log")
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" and not small
                                                   else ""))
        else:
            axis.get_major_formatter().set_useOffset(False)  # plain numbers, no "+5e-1" above the axis
        set_lim(*_limits(values, log))


def _point_to_y(ax, others: dict, key: str, small: bool) -> None:
    """y as a black cross when it is inside the frame, else an arrow at the frame's edge towards it."""
    if "degraded" not in others:
        return
    r = others["degraded"]
    ax.plot([r["mse"]], [r[key]], "X", color="black", markersize=8 if small else 10, label="degraded y", zorder=3,
            gid=f"degraded-y-{key}", clip_on=True)
    inside = ax.transAxes.inverted().transform(ax.transData.transform((r["mse"], r[key])))
    if all(0 <= v <= 1 for v in inside):
        return
    # the edge point on the way from the frame's centre to y, in axes fractions
    dx, dy = inside[0] - 0.5, inside[1] - 0.5
    t = min(0.46 / abs(dx) if dx else float("inf"), 0.46 / abs(dy) if dy else float("inf"))
    tip = (0.5 + t * dx, 0.5 + t * dy)
    tail = (0.5 + 0.8 * t * dx, 0.5 + 0.8 * t * dy)
    ax.annotate("", xy=tip, xytext=tail, xycoords="axes fraction", textcoords="axes fraction",
                arrowprops={"arrowstyle": "-|>", "color": "black", "lw": 1.5}, gid=f"degraded-y-arrow-{key}")
    text = f"degraded y\nMSE {r['mse']:.3g}, {r[key]:.3g}" if not small else "y"
    ax.annotate(text, xy=tail, xycoords="axes fraction", fontsize=7 if small else 8,
                ha="right" if dx > 0 else "left", va="top" if dy > 0 else "bottom",
                xytext=(-4 if dx > 0 else 4, -4 if dy > 0 else 4), textcoords="offset points",
                gid=f"degraded-y-label-{key}")


def _overlaps(box, boxes) -> bool:
    return any(box.overlaps(b) for b in boxes)


def place_labels(ax, points: list[tuple[float, float, str, str]], fontsize: float) -> list:
    """Annotate each (x, y, text, colour) so that no label overlaps another label or a marker.

    Greedy: each label takes the first offset of :data:`LABEL_OFFSETS` whose box (as drawn)
    overlaps neither an earlier label nor any point's marker; when none is free, the one with
    the fewest overlaps. Returns the annotations.
    """
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    marks = []
    for x, y, _, _ in points:
        cx, cy = ax.transData.transform((x, y))
        marks.append(Bbox.from_extents(cx - 9, cy - 9, cx + 9, cy + 9))  # a ring is ~18 px wide
    placed, labels = [], []
    for x, y, text, colour in points:
        ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=LABEL_OFFSETS[0], fontsize=fontsize,
                          color=colour)
        best = None
        for offset in LABEL_OFFSETS:
            ann.set_position(offset)
            box = ann.get_window_extent(renderer).expanded(1.05, 1.1)
            hits = sum(box.overlaps(b) for b in placed + marks)
            if best is None or hits < best[0]:
                best = (hits, offset, box)
            if hits == 0:
                break
        ann.set_position(best[1])
        placed.append(best[2])
        labels.append(ann)
    return labels


#: At most this many α are written beside a curve: more cannot be read, and each label costs text layout.
MAX_ALPHA_LABELS = 12


def labelled(points: list[dict], most: int = MAX_ALPHA_LABELS) -> list[dict]:
    """The points of a curve (sorted by α) whose α is written: all of a short curve; of a long one
    the ends, α = 0 and α = 1, and evenly spaced others, ``most`` in all."""
    if len(points) <= most:
        return points
    keep = {round(i * (len(points) - 1) / (most - 1)) for i in range(most - 2)} | {len(points) - 1}
    keep |= {i for i, r in enumerate(points) if r["alpha"] in (0.0, 1.0)}
    return [points[i] for i in sorted(keep)]


def draw_panel(ax, rows: list[dict], key: str, small: bool = False) -> list[tuple[float, float, str, str]]:
    """One panel: every DOT variant's curve against MSE, x*, the lowest-MSE rings and y.

    Returns the α labels to place (:func:`place_labels`) once the figure's layout is final:
    every α but 1 (x*) on the main panel, none on a small one (its points keep the same order).
    """
    methods = list(dict.fromkeys(r["method"] for r in rows if is_dot(r["method"])))
    curves = {m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["alpha"]) for m in methods}
    others = {r["method"]: r for r in rows if not is_dot(r["method"])}
    for colour, (method, dot) in zip(COLOURS, curves.items(), strict=False):
        label = "DOT x̂α" if method == "dot" else f"DOT {method[4:]} x̂α"
        ax.plot([r["mse"] for r in dot], [r[key] for r in dot], "-o", color=colour, label=label, zorder=2,
                markersize=4 if small else 6, gid=f"curve-{method}-{key}")
    if "restored" in others:
        r = others["restored"]
        ax.plot([r["mse"]], [r[key]], "*", color="tab:red", markersize=11 if small else 16, zorder=4,
                label="restored x* (the restorer, α = 1)", gid=f"x-star-{key}")
        ax.annotate("x*", (r["mse"], r[key]), textcoords="offset points", xytext=(-14, -14), color="tab:red",
                    fontsize=9 if small else 11, fontweight="bold", gid=f"x-star-label-{key}")
    for i, (colour, (method, dot)) in enumerate(zip(COLOURS, curves.items(), strict=False)):
        alpha = lowest_mse_alpha(dot, method)
        if alpha is not None:
            r = next(r for r in dot if r["alpha"] == alpha)
            ax.plot([r["mse"]], [r[key]], "o", markersize=11 if small else 15, markerfacecolor="none",
                    markeredgecolor=colour, markeredgewidth=2, zorder=3, gid=f"lowest-mse-{method}-{key}",
                    label="ring: lowest MSE, where the trade-off starts" if i == 0 else "_ring")
    _frame(ax, curves, others, key, small)
    _point_to_y(ax, others, key, small)
    ax.set_xlabel("distortion: MSE (lower is better)", fontsize=8 if small else 10)
    ax.set_ylabel(f"{key} (lower is better)" if small else f"perception: {key} (lower is better)",
                  fontsize=8 if small else 10)
    ax.set_title(TITLES.get(key, key), fontsize=9 if small else 12)
    ax.tick_params(labelsize=7 if small else 9)
    ax.grid(True, alpha=0.3)
    if small:
        return []
    return [(r["mse"], r[key], f"{r['alpha']:g}", colour)
            for colour, dot in zip(COLOURS, curves.values(), strict=False) for r in labelled(dot) if r["alpha"] != 1.0]


def pd_curve(rows: list[dict], stem: Path, panels=("latent_fd", "patch_fd")) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``: perception (y) against distortion (x = MSE).

    The first of ``panels`` with values is the main panel; the others are small panels in a
    column beside it. Each DOT variant is one curve, its points joined in α order and labelled
    with α (main panel); x* is a labelled red star, a ring marks each curve's lowest-MSE α, where
    the theory's trade-off starts (:func:`lowest_mse_alpha`), and y is a cross inside the frame
    or an arrow towards it. An axis is logarithmic when its framed values span more than a decade.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = [k for k in panels if all(r.get(k) is not None for r in rows)]
    main, rest = panels[0], panels[1:]
    fig = plt.figure(figsize=(11.5 if rest else 8, 7), layout="constrained")
    grid = fig.add_gridspec(max(1, len(rest)), 2 if rest else 1, width_ratios=[2.4, 1] if rest else None)
    axis = fig.add_subplot(grid[:, 0])
    labels_to_place = draw_panel(axis, rows, main)
    for i, key in enumerate(rest):
        draw_panel(fig.add_subplot(grid[i, 1]), rows, key, small=True)
    handles, labels = axis.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=9, frameon=False)
    fig.suptitle("Perception–distortion trade-off: points labelled by α; from the ring towards α = 0, MSE rises "
                 "while perception improves", fontsize=11)
    fig.canvas.draw()  # the layout is final from here: labels are placed where they will be drawn
    fig.set_layout_engine("none")
    place_labels(axis, labels_to_place, 8)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    atomic_write(paths[0], lambda handle: fig.savefig(handle, format="png", dpi=110))  # a full disk names the file
    atomic_write(paths[1], lambda handle: fig.savefig(handle, format="svg"))
    plt.close(fig)
    return paths


__all__ = ["pd_curve", "draw_panel", "place_labels", "is_dot", "lowest_mse_alpha", "labelled", "MAX_ALPHA_LABELS"]
