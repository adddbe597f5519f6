"""The tools offered to the model.

Names and argument names match public notebook-agent trajectory data
(``add_and_execute_jupyter_code_cell(code)``, ``final_answer(answer)``) so those sets can
be trained on as they are; ``add_markdown_cell`` lets a model narrate between cells.
"""

from __future__ import annotations

from .types import ToolSpec

CODE_TOOL = "add_and_execute_jupyter_code_cell"
MARKDOWN_TOOL = "add_markdown_cell"
FINAL_TOOL = "final_answer"

TOOL_ARGUMENT = {CODE_TOOL: "code", MARKDOWN_TOOL: "text", FINAL_TOOL: "answer"}
"""The one required string argument of each tool."""


def _spec(name: str, description: str, arg: str, arg_description: str) -> ToolSpec:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {arg: {"type": "string", "description": arg_description}},
                "required": [arg],
            },
        },
    }


TOOLS: list[ToolSpec] = [
    _spec(
        CODE_TOOL,
        "Append a Python code cell to the notebook, execute it in the kernel and return its output.",
        "code",
        "The Python code to run. The DataFrame is already loaded.",
    ),
    _spec(
        MARKDOWN_TOOL,
        "Append a markdown cell to the notebook (a short heading or explanation).",
        "text",
        "Markdown text.",
    ),
    _spec(
        FINAL_TOOL,
        "Finish the analysis with written conclusions in markdown, quoting numbers seen in outputs.",
        "answer",
        "The conclusions, in markdown.",
    ),
]

TOOL_NAMES = frozenset(TOOL_ARGUMENT)
