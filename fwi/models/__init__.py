"""Networks: attention blocks, the configurable attention U-Net, the mix-attention decoder, InversionNet."""

from fwi.models.attention import create_attn, create_gate, list_attn, list_gates
from fwi.models.build import ModelConfig, build_model
from fwi.models.complexity import count_flops, count_params
from fwi.models.inversionnet import InversionNet
from fwi.models.mix_decoder import MixAttentionDecoder
from fwi.models.unet import AttentionUNet

__all__ = ["ModelConfig", "build_model", "AttentionUNet", "InversionNet", "MixAttentionDecoder", "create_attn",
           "create_gate", "list_attn", "list_gates", "count_params", "count_flops"]
