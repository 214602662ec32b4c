"""Explorer pages: the token menu clear of the title, an explanation on the page, plotly.js inline or shared."""

from __future__ import annotations

from attnkit.viz import maps_figure, write_explorer
from attnkit.viz.page import EXPLORER_DESCRIPTION, SHARED_PLOTLYJS

from .test_browser import moving_blob_record

TITLE_TEXT_PX = 25  # a 17 px title line with its leading
MENU_PX = 26


def test_the_token_menu_sits_between_the_title_and_the_plot():
    figure = maps_figure.attention_figure(moving_blob_record(), token="dog")
    layout, menu = figure.layout, figure.layout.updatemenus[0]
    assert layout.title.yref == "container" and layout.title.y == 1.0 and layout.title.yanchor == "top"
    assert menu.y == 1.0 and menu.yanchor == "bottom"  # its bottom edge menu.pad.b above the plot
    title_bottom = layout.title.pad.t + TITLE_TEXT_PX
    menu_top = layout.margin.t - menu.pad.b - MENU_PX
    assert menu_top - title_bottom >= 20, (title_bottom, menu_top)


def test_the_page_explains_what_it_shows(tmp_path):
    page = write_explorer(moving_blob_record(), tmp_path / "maps.html").read_text()
    assert EXPLORER_DESCRIPTION.split(";")[0] in page


def test_pages_of_a_folder_share_one_plotlyjs(tmp_path):
    first = write_explorer(moving_blob_record(), tmp_path / "a.html", plotlyjs="shared")
    second = write_explorer(moving_blob_record(), tmp_path / "b.html", plotlyjs="shared")
    library = tmp_path / SHARED_PLOTLYJS
    assert library.stat().st_size > 1_000_000
    for page in (first, second):
        assert f'src="{SHARED_PLOTLYJS}"' in page.read_text() and page.stat().st_size < 200_000


def test_single_file_pages_inline_plotlyjs(tmp_path):
    page = write_explorer(moving_blob_record(), tmp_path / "a.html")
    assert page.stat().st_size > 1_000_000 and f'src="{SHARED_PLOTLYJS}"' not in page.read_text()
    assert not (tmp_path / SHARED_PLOTLYJS).exists()


def test_in_a_browser_a_wide_token_menu_does_not_cover_the_title(tmp_path):
    from .browser import chromium_context, open_page

    record = moving_blob_record()
    record.tokens = ["dog: a very long label for the normalised map", "ball: and its foreground mask"]
    url = write_explorer(record, tmp_path / "maps.html").as_uri()
    with chromium_context() as context:
        page, problems = open_page(context)
        page.goto(url)
        page.wait_for_selector("#attnkit-maps .heatmaplayer image")
        title = page.locator("#attnkit-maps .gtitle").first.bounding_box()
        menu = page.locator("#attnkit-maps .updatemenu-container").first.bounding_box()
        assert menu["y"] >= title["y"] + title["height"], (title, menu)
        assert not problems
