"""Networks: attention blocks, the configurable attention U-Net, the mix-attention decoder, InversionNet.

Import each name from the module that defines it (this package re-exports nothing, and importing it loads no torch):

    config        `ModelConfig` (torch-free), `PLACE_FLAGS`
    build         `build_model`, the network families (`BUILDERS`)
    unet          `AttentionUNet`, `DecoderBlock`, `UNetDecoder`, the decoders (`DECODERS`) and downsamplings
    mix_decoder   `MixAttentionDecoder`
    inversionnet  `InversionNet`
    adapter       `GatherAdapter` (gathers -> grid features)
    attention/    one module per block; `attention.registry`: `create_attn`, `create_gate`, `list_attn`, `list_gates`
    layers        conv-norm-act blocks, `NORMS`, `ACTS`
    complexity    `count_params`, `count_flops`; `summary` is their CLI
    legacy_keys   old checkpoint keys renamed at load
"""
