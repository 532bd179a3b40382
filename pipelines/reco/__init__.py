"""The reco pipeline: what is its own and not an operator's (its closed loop, datasets, training on them,
synthetic feedback). The online logic is `operators.reco`."""
