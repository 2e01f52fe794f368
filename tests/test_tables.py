"""tlhelpers.tables: the one table formatter."""

from tlhelpers import tables


def test_text_table_aligns_widens_and_rules():
    table = tables.text(
        ("name", "n"),
        [("a", "1"), ("longer", "22"), ("total", "23")],
        min_widths=(0, 3),
        header_rule=True,
        rule_before=[2],
    )
    assert table.splitlines() == [
        "name      n",
        "------  ---",
        "a         1",
        "longer   22",
        "------  ---",
        "total    23",
    ]


def test_markdown_table_padded_and_plain():
    assert tables.markdown(("a", "b"), [("x", "10")], align="lr") == "| a |  b |\n|:--|---:|\n| x | 10 |"
    plain = tables.markdown(("a", "b"), [("x|y", "1")], align="lr", pad=False)
    assert plain == "| a | b |\n| --- | ---: |\n| x\\|y | 1 |"
