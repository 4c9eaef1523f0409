"""The translation table covers the whole page, in all four languages."""

from ui import i18n


def test_every_label_on_the_page_is_in_the_table_in_all_four_languages():
    from ui.app import build

    page = build()
    assert i18n.missing(page.blocks.values()) == []  # a new label without a row fails here
    for row in i18n.TABLE:
        assert len(row) == len(i18n.CODES) and all(text.strip() for text in row), row[0][:40]
    found = i18n.translatable(page.blocks.values())
    updates = dict(zip(map(id, i18n.components(found)), i18n.relabel(found, "he")))
    tab = next(b for b, prop, text in found if text == "3 · Train")
    assert updates[id(tab)]["label"] == "3 · אימון"
    assert i18n.translate("3 · Train", "en") == "3 · Train" and i18n.translate("unknown", "fa") == "unknown"
