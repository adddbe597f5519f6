"""A replay in the CoPaw terminal agent's format, built from its documented output format:
``{"messages"}``, the user's question first and the system prompt second, JSON tool calls
inside ``<tool_call>`` in the assistant's text, results as ``<tool_response>`` user turns,
and the end a reply with no call. Shared by the headless and the live-notebook tests."""

from __future__ import annotations

import json
from typing import Any

MEAN_BILL = "43.92"
"""``round(penguins.bill_length_mm.mean(), 2)``: what the fixed script prints."""

SCRIPT = (
    "import matplotlib.pyplot as plt\n"
    "import pandas as pd\n"
    "\n"
    "data = pd.read_csv('penguins.csv')\n"
    "print(data.shape)\n"
    "print(round(data['bill_len'].mean(), 2))\n"
    "data.plot.scatter(x='bill_depth_mm', y='flipper_length_mm')\n"
    "plt.savefig('analysis/depth_vs_flipper.png')\n"
    "plt.savefig('analysis/depth_vs_flipper.pdf')  # the same figure twice: shown once\n"
    "plt.close()\n"
)
REPORT = f"# Penguin bill lengths\n\nThe average bill length is **{MEAN_BILL} mm** over 344 penguins."


def call(name: str, **arguments: str) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


def copaw_replay(report: bool = True) -> dict[str, Any]:
    """Glob, Read, Write+Bash (a KeyError), Edit+Bash (fixed), a refused pip install, a
    listing command, a markdown report, and the final reply with no call."""
    turns = [
        "Let me first see what files are available.\n\n" + call("Glob", pattern="*.csv"),
        "I found the data. Let me read it.\n\n" + call("Read", file_path="penguins.csv"),
        "Let me write an analysis script and run it.\n\n"
        + call("Write", file_path="analysis/explore.py", content=SCRIPT)
        + "\n\n"
        + call("Bash", command="python analysis/explore.py"),
        "The column has another name. Let me fix the script.\n\n"
        + call(
            "Edit",
            file_path="analysis/explore.py",
            old_string="data['bill_len']",
            new_string="data['bill_length_mm']",
        )
        + "\n\n"
        + call("Bash", command="cd analysis && python explore.py"),
        "Let me install scipy for a statistical test.\n\n" + call("Bash", command="pip install scipy"),
        "Let me look at the first rows.\n\n" + call("Bash", command="head -3 penguins.csv"),
    ]
    if report:
        turns.append(
            "Let me write the report.\n\n" + call("Write", file_path="analysis/report.md", content=REPORT)
        )
    turns.append(
        f"The analysis is complete. The average bill length of the penguins is {MEAN_BILL} mm, "
        "over the 344 rows of the data.\n\n@mean_bill[43.92]"
    )
    messages: list[dict[str, str]] = [
        {"role": "user", "content": "Hi! What is the average bill length of the penguins?"},
        {"role": "system", "content": "You are a professional Data Analyst..."},
    ]
    for i, turn in enumerate(turns):
        messages.append({"role": "assistant", "content": turn})
        if i < len(turns) - 1:
            messages.append(
                {"role": "user", "content": "<tool_response>\n(recorded result)\n</tool_response>"}
            )
    return {"messages": messages}
