"""The authors' released MS-Sync generator (LouisBearing/HMo-audio ``DynamicalModel``) as an msync
model (``arch: ms-sync-official``; docs/design.md, "Released MS-Sync model").

``config`` (its sizes, read from the release's ``args``), ``layout`` (every parameter's official
key, msync path and shape), ``network`` (its layers as pure functions), ``rollout`` (the forward
pass as one scan over frames), ``protocol`` (``execute_model``'s inference), ``convert``
(release → saved model, ``msync motion convert``), ``parity`` (``msync motion parity``).
Parity with the official modules is tested in tests/test_official.py.
"""
