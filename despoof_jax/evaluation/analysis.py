"""Spoof-medium analysis of estimated noise (paper Sec. 4.4, Fig. 4, Table 6).

Pure numpy + scikit-learn; no JAX. scikit-learn is imported inside the two functions that use it:
every training process imports the evaluation, and so this module, and scikit-learn's import
costs ~0.2 s of CPU a process (measured: the training imports take 4.8 s with it, 4.6 s
without), paid by every process of a multi-host run. Inputs are host arrays, e.g. the spoof noise N the
de-spoofing net estimated for each test video, shape [N, H, W, C] (the paper: 256 x 256 x 6).

* ``high_pass`` keeps the high-frequency band of the noise (Fig. 4 right): the same mask H(., k)
  as the repetitive loss (Eq. 6) -- zero a k x k block at the centre of the shifted 2-D FFT.
* ``tsne_embed`` projects features to 2-D for Fig. 4.
* ``medium_classification`` trains an SVM on part of the test set and classifies the rest
  (Table 6: 3 classes live/print/replay, 5 classes live/print1/print2/replay1/replay2).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from despoof_jax.evaluation.metrics import OULU_SPECIES_NAMES
from despoof_jax.training.losses import (
    central_mask,  # one definition of the paper's H(., k)
)

MEDIUM_NAMES = ("live", "print", "replay")
# Oulu-NPU species id -> medium id (0 live, 1 print, 2 replay); ids follow OULU_SPECIES_NAMES.
_SPECIES_TO_MEDIUM = np.array([0, 1, 1, 2, 2], dtype=np.int64)
assert len(_SPECIES_TO_MEDIUM) == len(OULU_SPECIES_NAMES)


def high_pass(noise: np.ndarray, k: int) -> np.ndarray:
    """High-frequency band of each channel of each image.

    Args:
      noise: [N, H, W, C] real array (any scale; the estimated spoof noise).
      k: side of the low-frequency block to remove (k = 0 is the identity).

    Returns:
      [N, H, W, C] float64: per image and channel, FFT -> fftshift -> zero the central k x k
      (``central_mask``) -> inverse, real part. For even k the mask is not conjugate-symmetric, so
      the inverse has a small imaginary part; taking the real part equals using the mask
      symmetrised about DC, which is what keeps the output real.
    """
    noise = np.asarray(noise)
    if noise.ndim != 4:
        raise ValueError(f"noise must be [N, H, W, C], got shape {noise.shape}.")
    _, h, w, _ = noise.shape
    mask = central_mask(h, w, int(k))[None, :, :, None]
    spec = np.fft.fftshift(np.fft.fft2(noise.astype(np.float64), axes=(1, 2)), axes=(1, 2))
    spec = spec * mask
    out = np.fft.ifft2(np.fft.ifftshift(spec, axes=(1, 2)), axes=(1, 2))
    return out.real


def fft_log_magnitude(image: np.ndarray) -> np.ndarray:
    """[H, W] log(1 + |FFT|) of an [H, W] or [H, W, C] image (channel mean), shifted, in [0, 1].

    For figures like the paper's Fig. 2 (spectra of live vs. spoof faces); pass to
    ``plots.image_grid``.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = image.mean(axis=-1)
    if image.ndim != 2:
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {image.shape}.")
    mag = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(image))))
    span = mag.max() - mag.min()
    return (mag - mag.min()) / span if span > 0 else np.zeros_like(mag)


def _as_features(features) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim < 2:
        raise ValueError(f"features must be [N, D] (or [N, ...], flattened), got {features.shape}.")
    features = features.reshape(features.shape[0], -1)
    if features.shape[0] == 0:
        raise ValueError("features is empty (N = 0).")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN/inf.")
    return features


def tsne_embed(features: np.ndarray, seed: int = 0, perplexity: float | None = None,
               pca_dims: int | None = 50) -> np.ndarray:
    """2-D t-SNE embedding (Fig. 4).

    Args:
      features: [N, D] (or [N, H, W, C], flattened per sample), e.g. the noise or its high-pass.
      seed: random_state of the PCA and t-SNE.
      perplexity: None -> min(30, (N - 1) / 3), floored at 1: sklearn requires perplexity < N,
        and ~N/3 keeps each point's effective neighbourhood well inside the set for small N.
      pca_dims: reduce to this many PCA components first when D and N exceed it (van der Maaten
        and Hinton's recommendation; it bounds memory and time for D = 256*256*6). None disables.

    Returns:
      [N, 2] float64.
    """

    x = _as_features(features)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"t-SNE needs at least 2 samples, got {n}.")
    if perplexity is None:
        perplexity = max(1.0, min(30.0, (n - 1) / 3.0))
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must be in (0, N={n}), got {perplexity}.")
    if pca_dims is not None and x.shape[1] > pca_dims and n > pca_dims:
        from sklearn.decomposition import PCA  # noqa: PLC0415 (imported lazily: module docstring)
        x = PCA(n_components=pca_dims, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE  # noqa: PLC0415 (imported lazily: module docstring)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return np.asarray(tsne.fit_transform(x), dtype=np.float64)


def species_to_medium(species_ids) -> np.ndarray:
    """Oulu-NPU species id -> medium id: 0 -> 0 live, 1, 2 -> 1 print, 3, 4 -> 2 replay.

    Names: ``MEDIUM_NAMES[medium_id]``. Raises ValueError on ids outside 0..4.
    """
    s = np.asarray(species_ids)
    if s.dtype.kind not in "iu":
        raise ValueError(f"species ids must be integers, got dtype {s.dtype}.")
    bad = (s < 0) | (s >= len(_SPECIES_TO_MEDIUM))
    if bad.any():
        raise ValueError(
            f"species ids {np.unique(s[bad]).tolist()} are not Oulu-NPU ids 0..4 "
            f"{OULU_SPECIES_NAMES}.")
    return _SPECIES_TO_MEDIUM[s]


def medium_classification(features: np.ndarray, classes, n_folds: int = 5, seed: int = 0,
                          kernel: str = "linear", C: float = 1.0, groups=None,
                          class_names: Sequence | None = None) -> dict:
    """Cross-validated SVM spoof-medium classification (Table 6).

    The paper splits Protocol 1's test set into a training and a testing part; we use stratified
    k-fold cross-validation instead so that every sample is predicted once, out of fold, and the
    confusion matrix covers the whole set. Pass ``groups`` (e.g. subject ids) to keep a group in a
    single fold (StratifiedGroupKFold), so the SVM never sees the test subject's other videos.

    Kernel: linear by default. The paper does not name one; the features are the flattened noise
    (D up to 256*256*6) with far fewer samples than dimensions, where classes are close to
    linearly separable and an RBF width could not be tuned without a further split. Features are
    standardised inside each training fold (Pipeline), so no test statistics leak in.

    Args:
      features: [N, D] (or [N, ...], flattened).
      classes: [N] class labels (ints or strings), e.g. ``species_to_medium(species)`` for the
        3-class model or the Oulu species ids for the 5-class model.
      n_folds: number of folds, 2 <= n_folds <= smallest class count.
      seed: shuffling seed of the folds.
      class_names: order (and names) of the confusion-matrix rows/columns; default sorted classes.

    Returns:
      dict with "accuracy" (pooled out-of-fold accuracy, float), "fold_accuracies" (list),
      "confusion" ([K, K] int64 np.ndarray, rows = true class, columns = predicted, in
      ``classes`` order), "classes" (list), "predictions" ([N] out-of-fold predictions).
    """

    x = _as_features(features)
    y = np.asarray(classes)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"classes must be [N={x.shape[0]}], got shape {y.shape}.")
    labels = np.unique(y).tolist() if class_names is None else list(class_names)
    missing = set(np.unique(y).tolist()) - set(labels)
    if missing:
        raise ValueError(f"classes {sorted(missing)} are not in class_names {labels}.")
    present, counts = np.unique(y, return_counts=True)
    if present.size < 2:
        raise ValueError(f"need at least 2 classes to classify, got {present.tolist()}.")
    if not 2 <= n_folds <= counts.min():
        raise ValueError(
            f"n_folds must be in [2, smallest class count = {int(counts.min())}], got {n_folds}.")
    from sklearn.model_selection import (  # noqa: PLC0415 (imported lazily: module docstring)
        StratifiedGroupKFold,
        StratifiedKFold,
    )
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415 (imported lazily: module docstring)
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415 (imported lazily: module docstring)
    from sklearn.svm import SVC  # noqa: PLC0415 (imported lazily: module docstring)
    if groups is None:
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x, y)
    else:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise ValueError(f"groups must be [N={y.shape[0]}], got shape {groups.shape}.")
        splits = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(x, y, groups)

    pred = np.empty_like(y)
    fold_acc = []
    for train_idx, test_idx in splits:
        model = make_pipeline(StandardScaler(), SVC(kernel=kernel, C=C))
        model.fit(x[train_idx], y[train_idx])
        pred[test_idx] = model.predict(x[test_idx])
        fold_acc.append(float(np.mean(pred[test_idx] == y[test_idx])))

    index = {c: i for i, c in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(confusion, ([index[c] for c in y.tolist()], [index[c] for c in pred.tolist()]), 1)
    return {
        "accuracy": float(np.mean(pred == y)),
        "fold_accuracies": fold_acc,
        "confusion": confusion,
        "classes": labels,
        "predictions": pred,
    }
