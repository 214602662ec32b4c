"""The toy world: synthetic moving-shape clips and a tiny CogVideoX pipeline trained on them.

Modules: ``world`` (renderer), ``classify`` (analytic colour/shape/centroid reader), ``export``
(mp4 and DAVIS-layout writers), ``model`` (pipeline builder), ``train`` (training loop),
``quality`` (the model's quality bar), ``pretrained`` (the bundled trained pipeline).
"""
