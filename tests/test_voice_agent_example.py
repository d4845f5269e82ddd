"""docs/design.md's example of feeding a voice agent's synthesized speech into a ``Streamer``
("**A voice agent's speech**"), run as written: the bundled model, 6 s of speech at 24 kHz in
100 ms chunks, every frame out once, in order."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def example() -> str:
    text = DESIGN.read_text()
    marker = "**A voice agent's speech**"
    assert marker in text, f"docs/design.md has no {marker}"
    block = re.search(r"^```python\n(.*?)^```", text.split(marker, 1)[1], re.DOTALL | re.MULTILINE)
    assert block, "no python block after the voice agent paragraph"
    return block.group(1)


@pytest.mark.slow
def test_the_voice_agent_example_runs_as_written():
    scope: dict = {}
    exec(compile(example(), "design.md: voice agent example", "exec"), scope)  # noqa: S102
    frames, streamer = scope["frames"], scope["streamer"]
    assert len(frames) == 150                      # 6 s at 25 fps
    assert frames[0].image.shape == (256, 256, 3) and streamer.delay_frames == 29
