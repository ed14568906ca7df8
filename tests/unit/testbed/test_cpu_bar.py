"""The bench's picture of where the cores went is drawn from the figures it is given."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from testbed.bench.cpu_bar import cpu_bar


def test_the_bar_is_a_png_of_the_figures(tmp_path: Path) -> None:
    cpu = {"emulator": 375.0, "Lambda workers": 258.0, "simulator": 172.0, "rule bridge": 132.0, "mosquitto": 38.0}
    path = cpu_bar(cpu, 1797.0, 311.0, tmp_path / "cpu.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 500


def test_no_rate_draws_no_budget_line_and_still_a_picture(tmp_path: Path) -> None:
    assert cpu_bar({"emulator": 1.0}, 0.0, 0.0, tmp_path / "cpu.png").stat().st_size > 0
