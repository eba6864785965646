"""Conditional diffusion: morphology-conditioned galaxy synthesis and augmentation.

The method of "Can AI dream of unseen galaxies? Conditional diffusion model
for galaxy morphology augmentation": a denoising diffusion model (diffusers
``UNet2DModel``, DDPM training with Lightning, EMA weights) conditioned on a
class label or on a vector of morphology features (Galaxy Zoo vote
fractions, Sersic index, ellipticity...), with classifier-free guidance.
Samples come back in the data's units, can be scored for fidelity
(Frechet distance on tuningfork embeddings), conditioning (a classifier
trained on real data) and physical plausibility (statmorph KS tests), and can
be added to a supervised training set for rare classes.

>>> from tuningfork.generation import train_generator, generate, write_generated
>>> folder = train_generator(collection, "generator")               # doctest: +SKIP
>>> sample = generate(folder, ["edge_on"], n=16, guidance=2.0)      # doctest: +SKIP
>>> write_generated(sample, "generated")                            # doctest: +SKIP

Modules: :mod:`~.scaling` (preprocessing to model space and back),
:mod:`~.folder` (the generator view of a model folder; the network and its
condition space are :mod:`tuningfork.models.nets.unet` and
:mod:`tuningfork.models.conditions`), :mod:`~.train`, :mod:`~.sample`, :mod:`~.evaluate`, :mod:`~.augment`
(rare-class augmentation; ``tuningfork train --augment-with``) and
:mod:`~.tour` (the ``tuningfork demo`` stop).

Sizes
-----
CPU-sized defaults (2 cores, minutes): 32 px stamps, ``UNetConfig(channels=
(32, 64, 64), layers_per_block=1, attention_levels=1)`` (1.1 M parameters),
batch 32, learning rate 1e-3, 20-30 epochs over about a thousand galaxies,
sampling with DDIM in 25 steps.

GPU-sized configuration (one modern GPU, hours), closer to the paper:
64 px stamps (``PreprocessConfig(output_size=64, ...)``),
``UNetConfig(channels=(128, 256, 256, 512), layers_per_block=2,
attention_levels=2, norm_groups=32)`` (74 M parameters), batch 128,
learning rate 1e-4, ``ema_decay=0.9999``, 200-500 epochs over the full
Galaxy Zoo 2 sample (~240 000 galaxies), 1000 training steps, and sampling
with DDIM or DPM-Solver in 50-100 steps at guidance 1.5-3.
"""

from ..models import ConditionalUNet, ConditionSpace, UNetConfig
from .augment import folder_classifier, generate_for_classifier, to_classifier_input
from .evaluate import evaluate_generator, frechet_distance, morphometry_ks, real_in_data_units
from .folder import Generator, load_generator
from .sample import GeneratedSample, generate, sample_model_space, write_generated
from .scaling import DiffusionScaling, inverse_stretch
from .train import DEFAULT_PREPROCESS, diffusion_loss, noise_schedule, train_generator

__all__ = [
    "DEFAULT_PREPROCESS",
    "ConditionSpace",
    "ConditionalUNet",
    "DiffusionScaling",
    "GeneratedSample",
    "Generator",
    "UNetConfig",
    "diffusion_loss",
    "evaluate_generator",
    "folder_classifier",
    "frechet_distance",
    "generate",
    "generate_for_classifier",
    "inverse_stretch",
    "load_generator",
    "morphometry_ks",
    "noise_schedule",
    "real_in_data_units",
    "sample_model_space",
    "to_classifier_input",
    "train_generator",
    "write_generated",
]
