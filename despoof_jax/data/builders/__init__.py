"""TFDS builders, one package per dataset (TFDS requires a builder to live in a package).

Importing a builder package registers its dataset with TFDS, e.g.
`import despoof_jax.data.builders.oulu_npu` before `tfds.builder("oulu_npu", ...)`;
`despoof_jax.data.datasets` imports the one a config names. The real-dataset builders share
`real_common` (the builder base, frame sampling, worker pool, resumability, skip bookkeeping).
"""
