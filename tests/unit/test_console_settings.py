"""The console's settings: tile URL, first view and map feed interval, each refused with its name."""

from __future__ import annotations

import pytest

from server.settings import SettingsError, load_settings

KEY = "k" * 32


def test_defaults_draw_openstreetmap_over_moscow_every_second() -> None:
    settings = load_settings(environ={"TOT_SECRET_KEY": KEY})
    assert settings.console_tile_url == "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert "OpenStreetMap</a> contributors" in settings.console_tile_attribution
    assert settings.console_map_view == (55.7558, 37.6173, 11)
    assert settings.map_feed_interval_ms == 1000


def test_given_values_are_read() -> None:
    settings = load_settings(
        environ={
            "TOT_SECRET_KEY": KEY,
            "TOT_CONSOLE_TILE_URL": "https://tiles.example.org/{z}/{x}/{y}.png",
            "TOT_CONSOLE_TILE_ATTRIBUTION": "© Example",
            "TOT_CONSOLE_MAP_VIEW": "59.93,30.31,12",
            "TOT_MAP_FEED_INTERVAL_MS": "500",
        }
    )
    assert settings.console_tile_url == "https://tiles.example.org/{z}/{x}/{y}.png"
    assert settings.console_tile_attribution == "© Example"
    assert settings.console_map_view == (59.93, 30.31, 12)
    assert settings.map_feed_interval_ms == 500


@pytest.mark.parametrize("off", ["", "off", "None"])
def test_tiles_can_be_switched_off(off: str) -> None:
    settings = load_settings(environ={"TOT_SECRET_KEY": KEY, "TOT_CONSOLE_TILE_URL": off})
    assert settings.console_tile_url == "" and settings.console_tile_attribution == ""


def test_other_tiles_get_no_openstreetmap_attribution() -> None:
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    settings = load_settings(environ={"TOT_SECRET_KEY": KEY, "TOT_CONSOLE_TILE_URL": url})
    assert settings.console_tile_url == url and settings.console_tile_attribution == ""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOT_CONSOLE_TILE_URL", "ftp://tiles.example.org/{z}/{x}/{y}.png"),
        ("TOT_CONSOLE_TILE_URL", "https://tiles.example.org/tile.png"),
        ("TOT_CONSOLE_MAP_VIEW", "55.7,37.6"),
        ("TOT_CONSOLE_MAP_VIEW", "95,37.6,11"),
        ("TOT_CONSOLE_MAP_VIEW", "55.7,37.6,30"),
        ("TOT_MAP_FEED_INTERVAL_MS", "0"),
    ],
)
def test_bad_values_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"TOT_SECRET_KEY": KEY, name: value})
    assert err.value.setting == name
