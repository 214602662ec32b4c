"""The toy world: synthetic moving-shape clips and tiny video pipelines trained on them.

Modules: ``world`` (renderer), ``classify`` (analytic colour/shape/centroid reader), ``export``
(mp4 and DAVIS-layout writers), ``model`` (CogVideoX pipeline builders, text-to-video and
image-to-video), ``wan_model`` (the Wan 2.1 pipeline builder), ``denoiser`` (the transformer as a
clean-clip predictor, through the pipeline's model family), ``train`` (training loop), ``quality`` (the model's quality bar), ``diagnose`` (where a
model loses motion), ``scores`` (the metrics of a generated clip against its reference), ``measure`` (a
package: LMP against baseline and ablations), ``pretrained`` (the bundled trained pipelines).
"""
