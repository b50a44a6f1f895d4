"""The packaged pretrained model (`despoof_jax.load("pretrained")`): the de-spoofing method at
128 px on the wide2 synthetic world (`wide2_s128`: randomised print screening, display sub-pixel
layouts, camera pipelines, skin texture, natural backgrounds, photo sources, content scenes),
intra protocol, DS Net at the paper's width, dev-EER threshold.

    python -m despoof_jax.main --config=configs/pretrained.py --workdir=/work/pretrained_run
    python -m despoof_jax.serving.pretrained /work/pretrained_run   # -> despoof_jax/serving/pretrained/

The packaged model is this config's output as it stands (the run of 2026-12-06, shipped under
Rule R; README, "Rules R and E, decided"). Sized for a 2-core CPU (95 min on an idle one of
2026-12-03, data build included; nearly 2 h on 2026-12-06's, stage 2 at 0.6 steps/s): DS Net at the
paper's width (1.0), the quickstart's narrow DQ and VQ Nets (0.25, 0.5), batch 8, learning rate
1e-3, 300 + 3600 steps, the stage-2 rate cut to 1e-4 after step 2400; the losses,
their weights, k (scaled: 32 at 128 px) and the two-stage schedule are the paper's. Three
settings that are not in the paper (README "Reading of the paper"; the model card says why):
`model.ds_input_skip` and `loss.noise_truth = 3` (lambda_1), so that DS Net learns the medium's
texture from the simulator's true noise, and `eval.fusion = "dev_eer"`, the decision score of
lowest EER on the dev split (the 0\1 map for the shipped run). The step decay
(`train.lr_decay_step`) is not in the paper either: the 0\1-map loss stopped falling after a few
hundred steps at the constant rate, and the last third at a tenth of it lowered the test ACER from
22.2 % to 20.1 % (README, "Candidate 8"). Nor is `eval.input_policy = "tiles"` (Rule N,
README "Native-resolution tiles"): the served model reads crops larger than 128 px as 128 px
tiles at their own resolution; the evaluation records it in model.json. Variant ",smoke"
(`--config=configs/pretrained.py:smoke`): `wide2_smoke` at 64 px, a few steps.
"""
from despoof_jax import config as config_lib

STAGE1_STEPS = 300
STAGE2_STEPS = 3600
LR_DECAY_STEP = 2400   # stage 2's rate x 0.1 from here (stage 1's 300 steps never reach it)


def get_config(arg: str = ""):
    _, smoke = config_lib.parse_variant(arg, ("pretrained",), "configs/pretrained.py")
    c = config_lib.quickstart_scale(config_lib.base_config())
    c.data.builder_config = "wide2_s128"
    c.data.image_size = 128
    c.train.stage1_steps = STAGE1_STEPS
    c.train.stage2_steps = STAGE2_STEPS
    c.train.lr_decay_step = LR_DECAY_STEP
    c.train.lr_decay_factor = 0.1
    c.train.checkpoint_every = 50
    c.eval.batch_size = 48
    c.model.ds_width = 1.0
    c.model.ds_input_skip = True
    c.loss.noise_truth = 3.0
    c.eval.fusion = "dev_eer"
    # Rule N (README, "Native-resolution tiles", decided 2026-12-05): crops larger than 128 px
    # are read as 128 px tiles at their own resolution, so a sensor finer than the input keeps
    # its artifacts (the shrink averaged them away: ACER 21.8 % -> 17.3 % on fresh identities).
    c.eval.input_policy = "tiles"
    if smoke:
        c = config_lib.smoke(c)
        c.data.builder_config = "wide2_smoke"
        c.train.stage1_steps = 4
        c.train.stage2_steps = 4
        c.train.lr_decay_step = 2   # the decay's path too
        c.train.checkpoint_every = 4
        c.train.log_every = 2
    c.lock()
    return c
