"""Astroformer-style hybrid convolution-transformer network.

Astroformer (Dagli 2023) is a CoAtNet: a convolutional stem, MBConv stages
that learn local texture cheaply and with a convolution's inductive bias,
then transformer stages with relative self-attention once the feature map is
small.  It was designed for the low-data regime (Galaxy10 DECaLS, 17,736
images), where its depth pattern and strong regularisation (mixup/cutmix,
stochastic depth, label smoothing) matter more than size.  The blocks are
timm's CoAtNet/MaxViT implementation (:class:`timm.models.maxxvit.MaxxVit`);
this module only chooses a configuration sized for 64-pixel cutouts and CPU
training.
"""

from __future__ import annotations

from torch import nn

from ..registry import register_model


@register_model("hybrid")
def hybrid_net(
    num_outputs: int,
    in_channels: int = 3,
    image_size: int = 64,
    widths: tuple[int, ...] = (32, 64, 96, 128),
    depths: tuple[int, ...] = (1, 2, 2, 1),
    stem_width: int = 24,
    head_dim: int = 32,
    drop_path_rate: float = 0.1,
    dropout: float = 0.2,
) -> nn.Module:
    """Build the hybrid network.

    Parameters
    ----------
    num_outputs : int
        Number of logits.
    in_channels : int
        Bands of the input image.
    image_size : int
        Side of the square input, in pixels; the relative position tables
        of the attention are sized for it.
    widths : tuple of int
        Channels of the four stages: two MBConv stages then two transformer
        stages (the "C-C-T-T" layout of CoAtNet and Astroformer).
    depths : tuple of int
        Blocks per stage.  Astroformer's low-data finding is that the
        convolutional stages should not be shallower than the transformer
        ones.
    stem_width : int
        Channels of the convolutional stem (stride 2).
    head_dim : int
        Channels per attention head.
    drop_path_rate : float
        Stochastic-depth rate, increasing linearly to this over the blocks.
    dropout : float
        Dropout before the classifier.

    Returns
    -------
    torch.nn.Module
        A :class:`timm.models.maxxvit.MaxxVit`; its features are timm's
        ``forward_head(forward_features(x), pre_logits=True)``.
    """
    # Imported here: timm takes a second to import, and a process that only runs another network never needs it.
    from timm.models.maxxvit import MaxxVit, MaxxVitCfg, MaxxVitConvCfg, MaxxVitTransformerCfg

    config = MaxxVitCfg(
        embed_dim=tuple(widths),
        depths=tuple(depths),
        block_type=("C", "C", "T", "T"),
        stem_width=stem_width,
        conv_cfg=MaxxVitConvCfg(block_type="mbconv", expand_ratio=4.0, attn_layer="se", norm_layer="batchnorm2d"),
        transformer_cfg=MaxxVitTransformerCfg(dim_head=head_dim, rel_pos_type="bias"),
    )
    return MaxxVit(
        config,
        img_size=image_size,
        in_chans=in_channels,
        num_classes=num_outputs,
        drop_rate=dropout,
        drop_path_rate=drop_path_rate,
    )
