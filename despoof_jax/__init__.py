"""despoof_jax: Face De-Spoofing (Jourabloo, Liu, Liu, ECCV 2018) in JAX/Flax.

The public API, loaded lazily so that `import despoof_jax` (and the standalone serving loader,
`despoof_jax.serving.serving_loader`) pulls in neither flax nor the training code:

    model = despoof_jax.load(workdir)          # DS Net, DQ Net, config, dev threshold
    model.decompose(images)                    # live estimate, noise, depth, 0\\1 map, score
    model.score(images)                        # scores and live/spoof decisions
    despoof_jax.export_model(model, out_dir)   # StableHLO serving artifact
    despoof_jax.train_and_evaluate(config, workdir)
"""
__version__ = "0.1.0"

_EXPORTS = {
    "load": "despoof_jax.serving.model", "DespoofModel": "despoof_jax.serving.model",
    "Scores": "despoof_jax.serving.model", "Decomposition": "despoof_jax.serving.model",
    "ModelLoadError": "despoof_jax.serving.model", "InputError": "despoof_jax.serving.model",
    "export_model": "despoof_jax.serving.export",
    "train_and_evaluate": "despoof_jax.experiment", "evaluate": "despoof_jax.evaluation.evaluate",
}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        import importlib  # noqa: PLC0415 (the API loads lazily: see the docstring)
        module = importlib.import_module(_EXPORTS[name])
        return getattr(module, "evaluate" if name == "evaluate" else name)
    raise AttributeError(f"module 'despoof_jax' has no attribute {name!r}")
