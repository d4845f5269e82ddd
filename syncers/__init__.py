"""msync.syncers: audio features, the temporal pyramid, datasets, the phantom corpus and the
audio-visual syncer pyramid (MS-Sync, stage 1). Depends on nothing else of msync."""
