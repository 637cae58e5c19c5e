"""One unit family for every size the commands print: binary, the divisor matching the name."""

import pytest

from pipeline.core import units


@pytest.mark.parametrize("count, text", [
    (0, "0 B"), (1023, "1,023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (27_100_000, "25.8 MiB"), (100 << 20, "100.0 MiB"), (3 << 30, "3.0 GiB"),
    (5 << 40, "5.0 TiB"), (5_000 << 40, "5,000.0 TiB")])
def test_sizes_take_the_largest_binary_unit_they_reach(count, text):
    assert units.format_bytes(count) == text


def test_the_divisor_matches_the_unit():
    assert (units.KIB, units.MIB, units.GIB) == (1024, 1024 ** 2, 1024 ** 3)
    assert units.format_bytes(units.MIB * 7.5) == "7.5 MiB"
    assert units.format_rate(units.MIB * 1_500, 2.0) == "750.0 MiB/s"
    assert units.format_rate(118_272, 1.0) == "115.5 KiB/s"
    assert units.format_rate(units.MIB, 0).endswith("iB/s")  # no division by zero


def test_no_console_string_says_a_decimal_unit():
    """The package's own messages (not comments) never name MB, GB or KB."""
    import pathlib
    import re
    import tokenize

    # Python 3.12 tokenizes an f-string's text as FSTRING_MIDDLE.
    TEXT_TOKENS = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    decimal = re.compile(r"\b(KB|kB|MB|GB|TB)\b")
    found = []
    for path in pathlib.Path(units.__file__).parents[1].rglob("*.py"):
        with tokenize.open(path) as f:
            for token in tokenize.generate_tokens(f.readline):
                if token.type in TEXT_TOKENS and decimal.search(token.string) \
                        and not token.string.startswith(('"""', "'''", 'r"""')):
                    found.append(f"{path.name}:{token.start[0]}: {token.string[:60]}")
    assert not found, found
