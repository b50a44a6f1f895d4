"""Figures for evaluation reports: ROC/DET, score histograms, t-SNE (Fig. 4), confusion
matrices (Table 6) and image grids (Figs. 2 and 5).

Matplotlib only, rendered off-screen: figures are built as ``matplotlib.figure.Figure``
objects and saved with the Agg canvas, never through ``pyplot``. That avoids switching the
process-wide backend (``matplotlib.use``) under other code, needs no display, and leaks no
figures. Every function writes a PNG and returns its path as a string.
"""
from __future__ import annotations

import io
from typing import Mapping, Sequence

import numpy as np
from etils import epath
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from despoof_jax.evaluation import metrics

# Fig. 4 colour code of the paper, keyed by species name (both "replay" and "display" spellings).
FIG4_COLORS = {
    "live": "black", "bona fide": "black", "bona_fide": "black",
    "print1": "green", "print2": "blue",
    "replay1": "magenta", "display1": "magenta",
    "replay2": "red", "display2": "red",
}
# Same code by Oulu-NPU species id, used when a name is not in FIG4_COLORS.
_ID_COLORS = ("black", "green", "blue", "magenta", "red")
_FALLBACK = ("tab:orange", "tab:cyan", "tab:olive", "tab:brown", "tab:pink", "tab:purple",
             "tab:gray")


def _save(fig: Figure, path) -> str:
    """PNG through `etils.epath`, so a figure lands in a gs:// workdir as well as a local one."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    path.write_bytes(buf.getvalue())
    return str(path)


def _species_name(sid: int, species_names) -> str:
    if species_names is None:
        return metrics.OULU_SPECIES_NAMES[sid] if sid == 0 else f"species{sid}"
    if isinstance(species_names, Mapping):
        return str(species_names.get(sid, f"species{sid}"))
    return str(species_names[sid]) if 0 <= sid < len(species_names) else f"species{sid}"


def species_color(sid: int, name: str) -> str:
    """Fig. 4 colour of a species: by name first, then by Oulu id, then a fallback palette."""
    if name.lower() in FIG4_COLORS:
        return FIG4_COLORS[name.lower()]
    if 0 <= sid < len(_ID_COLORS):
        return _ID_COLORS[sid]
    return _FALLBACK[sid % len(_FALLBACK)]


def plot_roc_det(scoresets: Mapping[str, "metrics.ScoreSet"], path) -> str:
    """ROC (left) and DET (right) curves, one line per named ScoreSet.

    ROC: x = BPCER (false positive rate, bona fide flagged), y = 1 - APCER (attacks detected),
    linear axes. DET: x = APCER (pooled over species), y = BPCER, both on the normal-deviate
    scale ``scipy.stats.norm.ppf`` as ISO/IEC 30107-3 plots them; rates of exactly 0 or 1 are
    clipped to [1e-4, 1 - 1e-4] so they stay on the axes.
    """
    if not scoresets:
        raise ValueError("plot_roc_det needs at least one ScoreSet.")
    fig = Figure(figsize=(11, 5))
    ax_roc, ax_det = fig.subplots(1, 2)
    eps = 1e-4
    for name, ss in scoresets.items():
        fpr, tpr, _ = metrics.roc(ss.scores, ss.labels)
        area = metrics.auc(ss.scores, ss.labels)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUC {area:.3f})")
        apcer_pooled = np.clip(1.0 - tpr, eps, 1 - eps)
        bpcer = np.clip(fpr, eps, 1 - eps)
        e, _ = metrics.eer(ss.scores, ss.labels)
        ax_det.plot(norm.ppf(apcer_pooled), norm.ppf(bpcer), label=f"{name} (EER {100 * e:.2f}%)")
    ax_roc.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax_roc.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="BPCER (bona fide rejected)",
               ylabel="1 - APCER (attacks detected)", title="ROC")
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99])
    tick_pos = norm.ppf(ticks)
    tick_lab = [f"{100 * t:g}" for t in ticks]
    lim = (norm.ppf(eps), norm.ppf(1 - eps))
    ax_det.plot(lim, lim, color="0.7", lw=0.8, ls="--")  # the EER line
    ax_det.set(xticks=tick_pos, xticklabels=tick_lab, yticks=tick_pos, yticklabels=tick_lab,
               xlim=lim, ylim=lim, xlabel="APCER (%)", ylabel="BPCER (%)", title="DET")
    for ax in (ax_roc, ax_det):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_score_histograms(scoreset: "metrics.ScoreSet", threshold: float, path,
                          bins: int = 40) -> str:
    """Step histograms of the scores of each species (bona fide included), shared bins, with
    the decision threshold as a vertical line (attack iff score >= threshold). Densities, so
    species of different sizes are comparable."""
    ss = scoreset
    edges = np.histogram_bin_edges(np.append(ss.scores, threshold), bins=bins)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for sid in np.unique(ss.species).tolist():
        name = _species_name(sid, ss.species_names)
        s = ss.scores[ss.species == sid]
        ax.hist(s, bins=edges, density=True, histtype="step", lw=1.5,
                color=species_color(sid, name), label=f"{name} (n={s.size})")
    ax.axvline(float(threshold), color="0.3", ls="--", label=f"threshold {float(threshold):.4g}")
    ax.set(xlabel="score (higher = attack)", ylabel="density", title="Scores per species")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_tsne(embedding: np.ndarray, species, species_names, path, title: str = "") -> str:
    """Scatter of a [N, 2] embedding coloured by species with the paper's Fig. 4 code
    (black live, green print1, blue print2, magenta replay1/display1, red replay2/display2)."""
    emb = np.asarray(embedding, dtype=np.float64)
    species = np.asarray(species)
    if emb.ndim != 2 or emb.shape[1] != 2:
        raise ValueError(f"embedding must be [N, 2], got shape {emb.shape}.")
    if species.shape != (emb.shape[0],):
        raise ValueError(f"species must be [N={emb.shape[0]}], got shape {species.shape}.")
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for sid in np.unique(species).tolist():
        name = _species_name(int(sid), species_names)
        pts = emb[species == sid]
        ax.scatter(pts[:, 0], pts[:, 1], s=12, color=species_color(int(sid), name), label=name)
    ax.set(xticks=[], yticks=[], title=title)
    ax.legend(loc="best", fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion(matrix, class_names: Sequence[str], path, title: str = "") -> str:
    """Confusion matrix [K, K] (rows = actual, columns = predicted) with counts in the cells,
    shaded by the row-normalised rate, as in Table 6."""
    m = np.asarray(matrix)
    k = len(class_names)
    if m.shape != (k, k):
        raise ValueError(f"matrix must be [K, K] with K = len(class_names) = {k}, got {m.shape}.")
    rows = m.sum(axis=1, keepdims=True)
    rate = np.divide(m, rows, out=np.zeros(m.shape, dtype=np.float64), where=rows > 0)
    fig = Figure(figsize=(1.2 * k + 2, 1.1 * k + 1.5))
    ax = fig.subplots()
    ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{m[i, j]:g}", ha="center", va="center",
                    color="white" if rate[i, j] > 0.6 else "black")
    names = [str(c) for c in class_names]
    ax.set(xticks=range(k), xticklabels=names, yticks=range(k), yticklabels=names,
           xlabel="predicted", ylabel="actual", title=title)
    fig.tight_layout()
    return _save(fig, path)


def noise_to_image(noise: np.ndarray, gain: float = 5.0) -> np.ndarray:
    """Fig. 5 noise visualisation: ``gain * noise + 128`` in 8-bit units, clipped to [0, 255].

    ``noise`` is in the image's [0, 1] units (so 128 becomes 128/255); returns float in [0, 1].
    Zero noise renders mid-grey so both signs are visible.
    """
    return np.clip(gain * np.asarray(noise, dtype=np.float64) + 128.0 / 255.0, 0.0, 1.0)


def _to_display(img) -> tuple[np.ndarray, bool]:
    """Image -> (float [H, W] or [H, W, 3] in [0, 1], is_gray). uint8 is scaled by 1/255;
    floats are clipped to [0, 1]."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 255.0
    else:
        a = np.clip(a.astype(np.float64), 0.0, 1.0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return a, True
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return a[..., :3], False
    raise ValueError(f"images must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {a.shape}.")


def image_grid(rows: Sequence[Sequence[np.ndarray]], row_titles: Sequence[str] | None,
               col_titles: Sequence[str] | None, path, cell_size: float = 1.8) -> str:
    """Grid of images, e.g. Fig. 5 (rows: input, ``noise_to_image(noise)``, live reconstruction)
    or Fig. 2 (``analysis.fft_log_magnitude`` spectra).

    Args:
      rows: list of rows, each a list of images: float in [0, 1] (clipped) or uint8, gray [H, W]
        / [H, W, 1] or RGB(A). Rows may have different lengths; missing cells stay blank.
      row_titles: one per row, or None.
      col_titles: one per column (longest row), or None.
    """
    if not rows or not any(len(r) for r in rows):
        raise ValueError("image_grid needs at least one image.")
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    if row_titles is not None and len(row_titles) != n_rows:
        raise ValueError(f"row_titles has {len(row_titles)} entries for {n_rows} rows.")
    if col_titles is not None and len(col_titles) != n_cols:
        raise ValueError(f"col_titles has {len(col_titles)} entries for {n_cols} columns.")
    fig = Figure(figsize=(cell_size * n_cols + 0.8, cell_size * n_rows + 0.4))
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for i in range(n_rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(rows[i]):
                img, gray = _to_display(rows[i][j])
                ax.imshow(img, cmap="gray" if gray else None, vmin=0, vmax=1,
                          interpolation="nearest")  # show noise pixels as they are
            if i == 0 and col_titles is not None:
                ax.set_title(str(col_titles[j]), fontsize=9)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(str(row_titles[i]), fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
