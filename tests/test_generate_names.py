"""Where ``sfumato generate`` saves: the name the user gave, corrected when its suffix names another
format (a JPEG is never saved as ``.png``), completed when it has none."""

from __future__ import annotations

from pathlib import Path

from sfumato.generate import _target


def test_a_suffix_of_another_format_is_corrected_and_said() -> None:
    path, note = _target(Path("out/grok.png"), "task_1", 0, 1, "image/jpeg")
    assert path == Path("out/grok.jpg")
    assert note == "saved as out/grok.jpg: the image is image/jpeg, not png"


def test_a_matching_suffix_is_kept_jpeg_included() -> None:
    assert _target(Path("a.png"), "t", 0, 1, "image/png") == (Path("a.png"), None)
    assert _target(Path("a.JPEG"), "t", 0, 1, "image/jpeg") == (Path("a.JPEG"), None)
    assert _target(Path("a.jpg"), "t", 0, 1, "image/jpeg") == (Path("a.jpg"), None)


def test_several_images_are_numbered_and_corrected_alike() -> None:
    assert _target(Path("fox.webp"), "t", 1, 2, "image/png") == (
        Path("fox-1.png"), "saved as fox-1.png: the image is image/png, not webp")


def test_no_suffix_gets_the_format_and_an_unknown_one_is_kept() -> None:
    assert _target(Path("fox"), "t", 0, 1, "image/webp") == (Path("fox.webp"), None)
    assert _target(Path("fox.out"), "t", 0, 1, "image/png") == (Path("fox.out"), None)
    assert _target(None, "task_9", 0, 1, "image/jpeg") == (Path("task_9.jpg"), None)
    assert _target(None, "task_9", 1, 2, "image/png") == (Path("task_9-1.png"), None)
