"""Number extraction and matching for grounding, and closed-form answer scoring (no kernel)."""

from __future__ import annotations

import pytest

from jupyter_analyst.agent.grounding import Evidence, check_grounding, extract_claims, extract_numbers
from jupyter_analyst.eval.answers import (
    AnswerSpec,
    extract_answers,
    extract_dabench_answers,
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
    assert claim_texts("delays of more than 60.0 minutes (5% of 1,200)", "over 60 min, 5%, 1200 rows") == []


@pytest.mark.parametrize(
    ("question", "conclusion", "claims"),
    [
        ("Is the correlation between -1 and 1?", "The correlation is 0.87.", ["0.87"]),
        ("Is the correlation between -1 and 1?", "The correlation is -0.51.", ["0.51"]),
        ("Which ages lie within 20 and 40?", "The mean age is 19.6 and 40.4 at most.", ["19.6", "40.4"]),
        ("How many rows have fare above 30.5?", "31 rows; 30.5 was the cut.", ["31"]),
    ],
)
def test_a_question_number_excuses_only_itself(question: str, conclusion: str, claims: list[str]) -> None:
    assert claim_texts(conclusion, question) == claims


def test_answer_values_are_always_claims() -> None:
    q = "Count the passengers older than 60 in 2012; report the share above 0.05."
    text = "@count[60] @year[2012] @share[0.05] @groups[3] @pct[100]\nthe cut was 60"
    assert claim_texts(text, q) == ["60", "2012", "0.05", "3", "100"]


def test_text_answers_are_looked_for_as_words_in_outputs() -> None:
    ev = Evidence.from_texts(
        ["species\nAdelie    152\nGentoo    124", "normal: False", "Month-to-month  0.427"],
        facts=["- island: object, 3 unique, e.g. Torgersen"],
    )

    def grounded(answer: str) -> bool | None:
        name, raw = next(iter(extract_answers(answer).items()))
        return check_grounding(answer, ev, answers={name: raw}).grounded

    assert grounded("@species[adelie]") and grounded("@species['Gentoo']")
    assert grounded("@is_normal[no]")  # a printed False supports no
    assert grounded("@contract[month-to-month]")
    assert grounded("@top[Adelie, Gentoo]")  # each list item printed
    assert grounded("@island[Torgersen]") is False  # facts hold labels, not results
    assert grounded("@species[Chinstrap]") is False
    assert grounded("@species[Adel]") is False  # whole words only
    assert grounded("@is_normal[yes]") is False
    g = check_grounding("@n[152] @sp[Adelie]", ev, answers={"n": "152", "sp": "Adelie"})
    assert (g.claims, g.text_claims, g.supported, g.grounded) == (2, 1, 2, True)


def test_data_facts_add_numbers_but_no_text() -> None:
    ev = Evidence.from_texts(["mean 4201.75"], facts=["DataFrame `df`: 344 rows x 8 columns"])
    assert check_grounding("344 penguins, mean 4201.75 g", ev).grounded
    assert check_grounding("345 penguins", ev).grounded is False


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
        ("Nothing numeric to say here.", "4201.754", None),  # no claim: n/a
    ],
)
def test_grounding_matches_on_stated_precision(claim: str, outputs: str, grounded: bool | None) -> None:
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
    # nothing trimmed: a padded number still parses (float ignores spaces), padded text is wrong
    assert score_dabench(labels, {"mean": " 34.65 ", "kind": " linear"}) == {"mean": True, "kind": False}


def test_dabench_reading_is_one_line_and_untrimmed() -> None:
    assert extract_dabench_answers("@a[ north ] @b[1.5]") == {"a": " north ", "b": "1.5"}
    assert extract_answers("@a[ north ]") == {"a": "north"}  # the built-in reading trims
    # an unclosed bracket stops at the line's end: the next line's answer is read
    assert extract_dabench_answers("@a[12.5\n@b[3]") == {"b": "3"}
    assert extract_dabench_answers("@a[multi\nline] @c[x]") == {"c": "x"}
    assert extract_answers("@a[multi\nline]") == {"a": "multi\nline"}  # built-in spans lines
    # on one line it runs to the next bracket, as DABench's own pattern does
    assert extract_dabench_answers("@a[12.5 @b[3]") == {"a": "12.5 @b[3"}
    assert extract_dabench_answers("@a[1]\n@a[2]") == {"a": "2"}  # the last one wins
