"""msync.render: keypoints to frames. FOMM (vox-256) in Flax with a PyTorch checkpoint
converter, a weight-free first-order warp renderer, face crop and video I/O. Depends on
nothing else of msync."""
