"""Number extraction and matching for grounding, and closed-form answer scoring (no kernel)."""

from __future__ import annotations

import pytest

from jupyter_analyst.agent.grounding import Evidence, check_grounding, extract_claims, extract_numbers
from jupyter_analyst.eval.answers import (
    AnswerSpec,
    extract_answers,
    format_instructions,
    score_answer,
    score_dabench,
)


def claim_texts(text: str, question: str = "") -> list[str]:
    return [c[0].text for c in extract_claims(text, question)]


def test_numbers_with_separators_percent_scale_and_exponent() -> None:
    values = {n.value for n in extract_numbers("total 1,234,567.5; rate 26.5%; $1.2 million; 4.2e+03")}
    assert {1234567.5, 26.5, 0.265, 1.2e6, 4200.0} <= values


def test_names_years_ordinals_dates_and_small_integers_are_not_claims() -> None:
    text = (
        "## Conclusions\n"
        "1. In 2009 the Q1 value of open_il_6m was 3rd; see 2007-01-05 12:30.\n"
        "2) The top 3 groups differ; 1.5 x IQR and p < 0.05 were used.\n"
        "- The mean is 42.13 (n = 116)."
    )
    assert claim_texts(text) == ["42.13", "116"]


def test_numbers_given_in_the_question_are_not_claims() -> None:
    q = "How many flights had a delay of more than 60 minutes?"
    assert claim_texts("2704 flights were delayed by more than 60 minutes", q) == ["2704"]


def test_answer_names_are_not_claims_but_values_are() -> None:
    assert claim_texts("@mean_fare_class1[87.96] @count_2024[1500]") == ["87.96", "1500"]


@pytest.mark.parametrize(
    ("claim", "outputs", "grounded"),
    [
        ("The mean is 4201.75 g", "mean    4201.754386", True),  # rounded claim
        ("The mean is 4,202 g", "4201.754", True),  # thousands separator, rounded to units
        ("r = 0.87", "0.8712", True),
        ("r = 0.8712", "0.87", True),  # the output was rounded, not the claim
        ("Churn is 26.5%", "churn rate 0.2654", True),  # percent vs fraction
        ("Churn is 0.27", "26.54%", True),  # fraction vs printed percent
        ("It fell by 12.3 points", "change   -12.31", True),  # sign ignored
        ("About 1.2 million riders", "1234567", True),
        ("The mean is 4201.99 g", "4201.754", False),
        ("The heaviest weighs 987654.321 kg", "4201.754 6300.0", False),
        ("Nothing numeric to say here.", "4201.754", False),  # no claim: not grounded
    ],
)
def test_grounding_matches_on_stated_precision(claim: str, outputs: str, grounded: bool) -> None:
    result = check_grounding(claim, Evidence.from_texts([outputs]))
    assert result.grounded is grounded


def test_grounding_lists_the_unsupported_numbers() -> None:
    g = check_grounding("Mean 42.13, median 31.5 and max 9999.5", Evidence.from_texts(["42.129 31.5"]))
    assert (g.claims, g.supported, g.unsupported) == (3, 2, ["9999.5"])


def test_extract_answers_last_wins_and_trims() -> None:
    got = extract_answers("first @a[1.0] then @b[ Naboo ] and again @a[2.5]")
    assert got == {"a": "2.5", "b": "Naboo"}


def test_score_answer_by_kind_and_tolerance() -> None:
    num = AnswerSpec("m", "the mean", "number", 2)
    assert score_answer(num, 42.129, "42.13")
    assert score_answer(num, 42.129, "42.12")  # one unit in the last asked decimal
    assert not score_answer(num, 42.129, "42.15")
    assert score_answer(num, 26.54, "26.54%")
    assert not score_answer(num, 42.1, None)
    assert not score_answer(num, 42.1, "about forty")
    count = AnswerSpec("n", "a count", "int")
    assert score_answer(count, 2704, "2,704") and not score_answer(count, 2704, "2705")
    text = AnswerSpec("c", "a name", "text")
    assert score_answer(text, ["Naboo", "Tatooine"], "'naboo'.")
    assert not score_answer(text, ["Naboo"], "Alderaan")
    assert "@m[value]" in format_instructions([num]) and "2 decimal places" in format_instructions([num])


def test_dabench_rule_is_exact_string_or_1e6() -> None:
    labels = {"mean": "34.65", "kind": "linear"}
    assert score_dabench(labels, {"mean": "34.650000", "kind": "linear"}) == {"mean": True, "kind": True}
    assert score_dabench(labels, {"mean": "34.66", "kind": "Linear"}) == {"mean": False, "kind": False}
    assert score_dabench(labels, {}) == {"mean": False, "kind": False}
