"""Tool-call parsing across the dialects local models speak, and their near-misses."""

from __future__ import annotations

from jupyter_analyst.agent.parsing import parse_tool_calls, split_reasoning

XML = (
    "Let me look.\n<tool_call>\n<function=add_and_execute_jupyter_code_cell>\n<parameter=code>\n"
    "print(df.shape)\nx = {'a': 1}\n</parameter>\n</function>\n</tool_call>"
)


def test_qwen35_xml_call() -> None:
    r = parse_tool_calls(XML)
    assert [c.name for c in r.calls] == ["add_and_execute_jupyter_code_cell"]
    assert r.calls[0].arguments == {"code": "print(df.shape)\nx = {'a': 1}"}
    assert r.content == "Let me look."
    assert r.error == ""


def test_string_argument_that_looks_like_json_stays_a_string() -> None:
    r = parse_tool_calls(
        "<tool_call>\n<function=add_and_execute_jupyter_code_cell>\n<parameter=code>\n42\n"
        "</parameter>\n</function>\n</tool_call>"
    )
    assert r.calls[0].arguments == {"code": "42"}


def test_non_string_parameters_decode_as_json() -> None:
    r = parse_tool_calls(
        "<tool_call>\n<function=plot>\n<parameter=bins>\n20\n</parameter>\n"
        '<parameter=cols>\n["a", "b"]\n</parameter>\n</function>\n</tool_call>'
    )
    assert r.calls[0].arguments == {"bins": 20, "cols": ["a", "b"]}


def test_hermes_json_call_and_fenced_json() -> None:
    r = parse_tool_calls(
        '<tool_call>\n{"name": "final_answer", "arguments": {"answer": "Done: 3 rows"}}\n</tool_call>'
    )
    assert r.calls[0].name == "final_answer" and r.calls[0].arguments == {"answer": "Done: 3 rows"}
    fenced = (
        '<tool_call>\n```json\n{"name": "final_answer", "arguments": "{\\"answer\\": \\"x\\"}"}'
        "\n```\n</tool_call>"
    )
    assert parse_tool_calls(fenced).calls[0].arguments == {"answer": "x"}


def test_unclosed_tags_from_a_truncated_reply() -> None:
    r = parse_tool_calls(
        "<tool_call>\n<function=add_and_execute_jupyter_code_cell>\n<parameter=code>\nprint(1)\n"
    )
    assert r.calls[0].arguments == {"code": "print(1)"}


def test_missing_wrapper_is_forgiven() -> None:
    r = parse_tool_calls("<function=final_answer>\n<parameter=answer>\nAll good\n</parameter>\n</function>")
    assert r.calls[0].name == "final_answer" and r.calls[0].arguments["answer"] == "All good"


def test_thinking_is_split_off() -> None:
    r = parse_tool_calls("<think>\nfirst the shape\n</think>\n\n" + XML)
    assert r.reasoning == "first the shape" and len(r.calls) == 1
    reasoning, rest = split_reasoning("only closing tag here</think>answer")
    assert reasoning == "only closing tag here" and rest == "answer"


def test_malformed_call_reports_an_error_for_the_model() -> None:
    r = parse_tool_calls('<tool_call>\n{"name": "final_answer", "arguments": {broken\n</tool_call>')
    assert r.calls == [] and "tried to call a tool" in r.error and "<function=" in r.error


def test_plain_text_has_no_calls_and_no_error() -> None:
    r = parse_tool_calls("The data has 3 rows. I am done.")
    assert r.calls == [] and r.error == "" and r.content.startswith("The data")


def test_two_calls_in_one_reply() -> None:
    r = parse_tool_calls(XML + "\n" + XML.replace("Let me look.\n", ""))
    assert len(r.calls) == 2
