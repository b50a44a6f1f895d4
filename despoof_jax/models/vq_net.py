"""VQ Net (Visual Quality Net), Table 1 column 4: the GAN discriminator on live images."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from despoof_jax.models.layers import ConvStack, max_pool2, scaled

# Reading of Table 1 (the VQ column is inconsistent): conv4-1 and conv4-2 are listed with stride 2
# but an output size of 256, and pool4-1..3 then halve to 128, 64, 32. We keep the output sizes and
# the 6-conv/3-pool structure the text describes and use stride 1 everywhere, so the flattened
# vector is (H/8)(W/8)*6 (6144 at 256 px). "dropout 0.2%" is read as a rate of 0.2.
BLOCKS = (
    (("conv4-1", 24), ("conv4-2", 20)),   # -> pool4-1, H/2
    (("conv4-3", 20), ("conv4-4", 16)),   # -> pool4-2, H/4
    (("conv4-5", 12), ("conv4-6", 6)),    # -> pool4-3, H/8
)
FC_HIDDEN = 100
REAL = 1   # logit index of "real live image" (Eq. 3/4); index 0 is "synthesised"


class VQNet(nn.Module):
    """x: [B, H, W, 6] -> logits [B, 2] (index REAL = a real live image, 0 = a reconstruction).

    fc4-1 is followed by an ELU: Table 1 lists fc4-1 -> dropout -> fc4-2 with no activation, which
    would make the head one affine map; an activation is the reading under which the two fc layers
    mean something (it adds no parameters).
    """

    width: float = 1.0
    dropout: float = 0.2
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.99   # BatchNorm running-average momentum

    @nn.compact
    def __call__(self, x, *, train: bool):
        y = x.astype(self.dtype)
        for i, block in enumerate(BLOCKS):
            # conv4-6 keeps its 6 channels at every width: it sets the fc4-1 input size.
            chans = [scaled(c, self.width) if n != "conv4-6" else c for n, c in block]
            y = ConvStack(chans, [n for n, _ in block], self.axis_name, self.dtype,
                          self.bn_momentum, name=f"block{i + 1}")(y, train=train)
            y = max_pool2(y)
        y = y.reshape(y.shape[0], -1)
        y = nn.elu(nn.Dense(FC_HIDDEN, dtype=self.dtype, name="fc4-1")(y))
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        return nn.Dense(2, dtype=self.dtype, name="fc4-2")(y).astype(jnp.float32)
