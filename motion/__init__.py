"""msync.motion: the multi-scale generator, its discriminators and GAN training, generation,
evaluation, speech/head-motion analysis and the ``msync`` command line. Imports ``syncers`` and
``render``; neither imports it."""
