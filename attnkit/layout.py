"""Where text, video and image tokens sit in an attention call's sequence."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenLayout:
    """The token order of one attention call, as the adapter describes it.

    ``role`` says what kind of attention this is, so plugins need no model checks:
    ``"joint"`` — text and video tokens in one sequence attend to each other (CogVideoX, HunyuanVideo);
    queries and keys share the spans below.

    ``grid`` is the latent video grid after patching, ``(frames, height, width)``;
    ``frames * height * width`` equals the length of the video span.
    """

    text: slice
    video: slice
    grid: tuple[int, int, int]
    image: slice | None = None
    role: str = "joint"

    def __post_init__(self) -> None:
        frames, height, width = self.grid
        video_length = self.video.stop - self.video.start
        if frames * height * width != video_length:
            raise ValueError(
                f"latent grid {self.grid} holds {frames * height * width} tokens but the video span "
                f"{self.video.start}:{self.video.stop} holds {video_length}; the adapter computed the grid wrongly"
            )

    @property
    def num_text_tokens(self) -> int:
        return self.text.stop - self.text.start

    @property
    def num_video_tokens(self) -> int:
        return self.video.stop - self.video.start

    @property
    def num_tokens(self) -> int:
        """Length of the whole sequence."""
        spans = [self.text, self.video] + ([self.image] if self.image is not None else [])
        return max(span.stop for span in spans)

    def span(self, name: str) -> slice:
        """The span called ``name`` (``"text"``, ``"video"`` or ``"image"``)."""
        span = {"text": self.text, "video": self.video, "image": self.image}.get(name)
        if span is None:
            raise KeyError(f"this layout has no {name!r} span; it has text, video" + (", image" if self.image else ""))
        return span
