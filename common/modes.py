"""The two ways a deep method sees its data; part of every result cell's identity.

* ``"features"``: the ResNet34 backbone is frozen; every method hashes the cached 512-d features
  (deep methods train their trunk and head on them).
* ``"finetune"``: deep methods train ResNet34 end to end on images, as the paper does; shallow
  methods still hash the frozen cached features.
"""
MODES = ("features", "finetune")
