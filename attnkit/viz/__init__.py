"""Looking at recorded attention: plotly map figures over latent frames, a concentration summary, HTML.

``attention_figure`` and ``concentration_figure`` return ``plotly.graph_objects.Figure`` (for notebooks);
``write_explorer`` saves both as one self-contained page; ``attnkit viz RECORD --token dog`` does it from
the command line. See docs/attention-maps.md.
"""

try:
    import plotly  # noqa: F401  (an optional extra: say which one instead of a bare ModuleNotFoundError)
except ImportError as error:
    raise ImportError(
        f"attnkit.viz draws its pages with plotly, which is not installed ({error}); "
        "install it with: pip install 'attnkit[viz]'"
    ) from error

from .maps_figure import attention_figure
from .page import MAPS_DIV_ID, SUMMARY_DIV_ID, save_html, write_explorer
from .summary import concentration, concentration_figure

__all__ = [
    "MAPS_DIV_ID",
    "SUMMARY_DIV_ID",
    "attention_figure",
    "concentration",
    "concentration_figure",
    "save_html",
    "write_explorer",
]
