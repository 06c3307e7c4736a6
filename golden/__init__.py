"""SQ-DM golden model: data set, EDM U-Net, EDM sampler, numerics and quantization references."""
