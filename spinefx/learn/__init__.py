"""Learning from patches: augmentation, folds, datasets, the network, per-fold training, saliency.

May import imaging/ (the patch-file contract) and the shared basics; never evaluate/.
"""
