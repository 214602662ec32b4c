"""Where text, video and image tokens sit among an attention call's queries and keys."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("joint", "self", "cross")
QUERY_SPANS = {"joint": ("text", "video", "image"), "self": ("video",), "cross": ("video",)}
KEY_SPANS = {"joint": ("text", "video", "image"), "self": ("video",), "cross": ("text", "image")}


@dataclass(frozen=True)
class TokenLayout:
    """The token order of one attention call, as the adapter describes it.

    ``role`` says what kind of attention this is, so plugins need no model checks:

    ``"joint"``
        text and video (and image) tokens in one sequence attend to each other (CogVideoX: [text, video];
        HunyuanVideo: [video, text]). Queries and keys are the same sequence, so every span is both a
        query span and a key span.
    ``"self"``
        video tokens attend to video tokens only (Wan ``attn1``); ``text`` is None.
    ``"cross"``
        video queries attend to text keys (and image keys) (Wan ``attn2``). ``video`` is a span of the
        queries; ``text`` and ``image`` are spans of the keys.

    Use :meth:`query_span` / :meth:`key_span` to ask for one side explicitly; :meth:`span` returns
    whichever side holds the name (in a joint call both sides agree).

    ``separately_normalised`` names key spans that have a softmax of their own, whose attention output
    is added to that of the other keys (Wan image-to-video: ``("image",)``). Probabilities are then
    normalised within each group of keys.

    ``grid`` is the latent video grid after patching, ``(frames, height, width)``;
    ``frames * height * width`` equals the length of the video span.
    """

    text: slice | None
    video: slice
    grid: tuple[int, int, int]
    image: slice | None = None
    role: str = "joint"
    separately_normalised: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"layout role {self.role!r} is not one of {list(ROLES)}")
        if self.role == "self" and (self.text is not None or self.image is not None):
            raise ValueError("a 'self' layout holds video tokens only; pass text=None and image=None")
        if self.role in ("joint", "cross") and self.text is None:
            raise ValueError(f"a {self.role!r} layout needs a text span; use role='self' for video-only attention")
        frames, height, width = self.grid
        video_length = self.video.stop - self.video.start
        if frames * height * width != video_length:
            raise ValueError(
                f"latent grid {self.grid} holds {frames * height * width} tokens but the video span "
                f"{self.video.start}:{self.video.stop} holds {video_length}; the adapter computed the grid wrongly"
            )
        for name in self.separately_normalised:
            if name not in self.key_spans:
                raise ValueError(
                    f"separately_normalised names {name!r}, which is not a key span of this layout "
                    f"(key spans: {sorted(self.key_spans)})"
                )

    # --- spans by side ------------------------------------------------------------------------------

    @property
    def query_spans(self) -> dict[str, slice]:
        """The spans among the queries, by name (only those present)."""
        return self._present(QUERY_SPANS[self.role])

    @property
    def key_spans(self) -> dict[str, slice]:
        """The spans among the keys, by name (only those present)."""
        return self._present(KEY_SPANS[self.role])

    def query_span(self, name: str) -> slice:
        """The span called ``name`` among the queries; a KeyError says which spans there are."""
        return self._lookup(name, self.query_spans, "queries")

    def key_span(self, name: str) -> slice:
        """The span called ``name`` among the keys; a KeyError says which spans there are."""
        return self._lookup(name, self.key_spans, "keys")

    def span(self, name: str) -> slice:
        """The span called ``name`` (``"text"``, ``"video"`` or ``"image"``) on whichever side holds it.

        Each name lives on one side only in self and cross calls, and both sides agree in joint calls,
        so the answer is unambiguous.
        """
        if name in self.query_spans:
            return self.query_spans[name]
        return self.key_span(name)

    def side_of(self, name: str) -> str:
        """``"query"``, ``"key"`` or ``"both"``: where the span ``name`` lives."""
        in_queries, in_keys = name in self.query_spans, name in self.key_spans
        if in_queries and in_keys:
            return "both"
        if in_queries:
            return "query"
        if in_keys:
            return "key"
        self.key_span(name)  # raises the descriptive KeyError
        raise AssertionError("unreachable")

    # --- lengths ------------------------------------------------------------------------------------

    @property
    def num_text_tokens(self) -> int:
        return 0 if self.text is None else self.text.stop - self.text.start

    @property
    def num_video_tokens(self) -> int:
        return self.video.stop - self.video.start

    @property
    def num_query_tokens(self) -> int:
        return max(span.stop for span in self.query_spans.values())

    @property
    def num_key_tokens(self) -> int:
        return max(span.stop for span in self.key_spans.values())

    @property
    def num_tokens(self) -> int:
        """Length of the whole sequence of a joint or self call (queries and keys are the same tokens)."""
        if self.role == "cross":
            raise ValueError(
                "a cross call has no single sequence: its queries and keys differ; "
                "use num_query_tokens or num_key_tokens"
            )
        return self.num_query_tokens

    def _present(self, names: tuple[str, ...]) -> dict[str, slice]:
        spans = {"text": self.text, "video": self.video, "image": self.image}
        return {name: spans[name] for name in names if spans[name] is not None}

    def _lookup(self, name: str, spans: dict[str, slice], side: str) -> slice:
        if name not in spans:
            raise KeyError(
                f"this {self.role} attention call has no {name!r} span among its {side}; "
                f"its {side} hold {', '.join(spans)}"
                + (" (declare attnkit_roles on the plugin to be called only for the roles it handles)"
                   if self.role != "joint" else "")
            )
        return spans[name]
