"""msync.render: keypoints to frames. FOMM (vox-256) in Flax with a PyTorch checkpoint
converter, a weight-free first-order warp renderer and the landmark mesh renderer. It reads
msync's data layer (``syncers.data``: keypoint layouts, landmark space) and nothing of
``motion``; finding faces, landmarks and reading or writing video are the data layer's
(``syncers.data.face``, ``syncers.data.landmarks``, ``syncers.data.video``)."""
