"""Networks: attention blocks, the configurable attention U-Net, the mix-attention decoder, InversionNet."""
