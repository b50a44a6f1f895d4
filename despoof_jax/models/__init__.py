"""The three nets of Table 1 (flax.linen): DS Net, DQ Net and VQ Net."""
from despoof_jax.models.dq_net import DQNet
from despoof_jax.models.ds_net import DSNet
from despoof_jax.models.vq_net import VQNet

__all__ = ["DSNet", "DQNet", "VQNet"]
