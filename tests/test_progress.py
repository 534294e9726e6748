"""Live progress on a terminal, silence otherwise."""

from __future__ import annotations

import io

from bot.progress import ProgressLine, describe
from bot.providers.status import Failed, Queued, Running, Succeeded


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_rewrites_one_line_on_a_terminal() -> None:
    stream = Tty()
    line = ProgressLine(stream)
    await line.update(Queued(position=3))
    await line.update(Running(progress=40, eta_s=6))
    line.close()
    text = stream.getvalue()
    assert "queued, position 3" in text and "running 40%, about 6 s left" in text
    assert text.count("\r") == 2 and text.endswith("\n")


async def test_progress_is_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream)
    await line.update(Queued(position=1))
    line.close()
    assert stream.getvalue() == ""


def test_descriptions() -> None:
    assert describe(Succeeded(outputs=())) == "done, 0 image(s)"
    assert describe(Failed(reason="nope")) == "failed: nope"
