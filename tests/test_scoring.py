from __future__ import annotations

import pytest

from retrostar_search.scoring import (
    Cascade,
    CascadeStage,
    Sample,
    UnparsedPolicy,
    integrate,
    parse_sample,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("analysis...\n<score>\n85\n</score>", 85),
        ("<score>70</score> then <score>10</score>", 70),  # first match, like the reference
        ("<score> 7 </score>", 7),
        ("<score>250</score>", 100),  # clipped to the scale
        ("<score>0</score>", 0),
        ("no tags, 90", None),
        ("<score>eighty</score>", None),
        ("<score>-5</score>", None),  # the reference's pattern has no sign
        ("<score>85", None),
    ],
)
def test_parse_sample(text: str, expected: int | None) -> None:
    sample = parse_sample(text)
    assert sample.score == expected
    assert sample.parsed is (expected is not None)
    assert sample.text == text


def test_mean_counts_unparsed_as_zero_like_the_reference() -> None:
    samples = [Sample("", 80), Sample("", None), Sample("", 70), Sample("", 90)]
    assert integrate(samples) == pytest.approx(60.0)


def test_skip_policy_averages_parsed_samples_only() -> None:
    samples = [Sample("", 80), Sample("", None), Sample("", 70)]
    assert integrate(samples, UnparsedPolicy.SKIP) == pytest.approx(75.0)
    assert integrate([Sample("", None)], UnparsedPolicy.SKIP) is None
    assert integrate([Sample("", None)], UnparsedPolicy.ZERO) == 0.0


def test_no_samples_is_unscored() -> None:
    assert integrate([]) is None


def test_cascade_parsing() -> None:
    cascade = Cascade.parse("100@1, 30@16")
    assert cascade.stages == (CascadeStage(100, 1), CascadeStage(30, 16))
    assert str(cascade) == "100@1,30@16"
    assert Cascade.parse("4").stages == (CascadeStage(None, 4),)
    assert Cascade.parse("all@2,5@8").stages == (CascadeStage(None, 2), CascadeStage(5, 8))


@pytest.mark.parametrize("spec", ["", "x@1", "10@0", "0@1", "10@1,all@4", "10@two"])
def test_invalid_cascades_are_rejected_with_the_expected_form(spec: str) -> None:
    with pytest.raises(ValueError, match=r"cascade"):
        Cascade.parse(spec)
