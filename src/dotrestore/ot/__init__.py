"""Pure mathematics on tensors: Gaussian moments and optimal transport maps, mixtures, patches, the
detail split, filters. Nothing here knows that images or files exist; nothing imports the rest of dotrestore."""
