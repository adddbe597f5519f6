"""Code that runs *inside* the kernel to describe figures and frames for the model.

A small model cannot read pixels or a 2,000-column HTML table, so the kernel itself
summarises the objects it displays: two IPython display formatters attach compact JSON
"facts" to every displayed matplotlib figure and pandas DataFrame/Series, under private
mime types that the executor strips from the notebook outputs (so saved notebooks stay
ordinary). ``frame_facts_code`` computes the richer per-column facts of the task message
(``agent.prompts.render_facts``).

Everything here is source text executed with ``KernelExecutor.run_silent``; it wraps its
work in functions that it deletes again, so the user's namespace gains no names.

Figure fact keys: ``type="figure"``, ``suptitle``, ``axes`` (list of: ``title``,
``xlabel``, ``ylabel``, ``lines``, ``collections``, ``patches``, ``images``, ``xlim``,
``ylim``, ``legend`` (max 10 labels), ``xticklabels`` (only when categorical, max 12)).
Frame fact keys: ``type="frame"``, ``kind`` ("DataFrame"|"Series"), ``name`` (Series
name), ``shape``, ``dtypes`` (column -> dtype, max 30), ``more_columns``, ``head``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..errors import InputError, KernelError, MissingVariableError

FIGURE_MIME = "application/vnd.jupyter-analyst.figure+json"
FRAME_MIME = "application/vnd.jupyter-analyst.frame+json"
FACTS_MIMES: dict[str, str] = {FIGURE_MIME: "figure", FRAME_MIME: "frame"}
"""Private mime type -> ``type`` of the fact it carries."""

SETUP_CODE = r"""
%matplotlib inline
def __jupyter_analyst_setup():
    from IPython import get_ipython
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    def _short(value, limit):
        text = str(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def _round(value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return float("%.4g" % value)

    def _figure_facts(fig):
        try:
            suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
            axes = []
            for ax in fig.get_axes()[:12]:
                info = {
                    "title": _short(ax.get_title() or ax.get_title(loc="left") or "", 200),
                    "xlabel": _short(ax.get_xlabel(), 120),
                    "ylabel": _short(ax.get_ylabel(), 120),
                    "lines": len(ax.lines),
                    "collections": len(ax.collections),
                    "patches": len(ax.patches),
                    "images": len(ax.images),
                    "xlim": [_round(v) for v in ax.get_xlim()],
                    "ylim": [_round(v) for v in ax.get_ylim()],
                }
                legend = ax.get_legend()
                if legend is not None:
                    info["legend"] = [_short(t.get_text(), 60) for t in legend.get_texts()[:10]]
                ticks = [t.get_text() for t in ax.get_xticklabels()]
                ticks = [t for t in ticks if t]
                if ticks and any(_round(t.replace("\u2212", "-")) is None for t in ticks):
                    info["xticklabels"] = [_short(t, 40) for t in ticks[:12]]
                axes.append(info)
            return {"suptitle": _short(suptitle, 200), "axes": axes}
        except Exception:
            return None

    def _frame_facts(obj):
        try:
            import pandas as pd

            is_frame = isinstance(obj, pd.DataFrame)
            if is_frame:
                dtypes = {str(c): str(t) for c, t in list(obj.dtypes.items())[:30]}
                more = max(0, obj.shape[1] - 30)
            else:
                dtypes = {str(obj.name): str(obj.dtype)}
                more = 0
            with pd.option_context("display.max_colwidth", 30, "display.width", 160):
                head = obj.head(5).to_string(max_cols=20) if is_frame else obj.head(5).to_string()
            if len(head) > 1500:
                head = head[:1500] + "\n..."
            return {
                "kind": "DataFrame" if is_frame else "Series",
                "name": None if is_frame or obj.name is None else str(obj.name),
                "shape": list(obj.shape),
                "dtypes": dtypes,
                "more_columns": more,
                "head": head,
            }
        except Exception:
            return None

    class _FactsFormatter(BaseFormatter):
        format_type = Unicode("")
        print_method = ObjectName("_repr_jupyter_analyst_facts_")
        _return_type = (dict,)

    ip = get_ipython()
    formatters = ip.display_formatter.formatters
    figure = _FactsFormatter(parent=ip.display_formatter)
    figure.format_type = "application/vnd.jupyter-analyst.figure+json"
    figure.for_type_by_name("matplotlib.figure", "Figure", _figure_facts)
    formatters[figure.format_type] = figure
    frame = _FactsFormatter(parent=ip.display_formatter)
    frame.format_type = "application/vnd.jupyter-analyst.frame+json"
    for module in ("pandas", "pandas.core.frame", "pandas.core.series"):
        frame.for_type_by_name(module, "DataFrame", _frame_facts)
        frame.for_type_by_name(module, "Series", _frame_facts)
    formatters[frame.format_type] = frame

try:
    __jupyter_analyst_setup()
finally:
    del __jupyter_analyst_setup
"""
"""Run once (silently) after the kernel starts: inline figures and the facts formatters."""

_FRAME_FACTS_TEMPLATE = r"""
def __jupyter_analyst_frame_facts(name):
    import json, math, re, warnings
    from IPython import get_ipython
    ns = get_ipython().user_ns
    if name not in ns:
        print(json.dumps({"error": "name %r is not defined" % name, "kind": "missing"}))
        return
    df = ns[name]
    try:
        import pandas as pd
    except ImportError:
        print(json.dumps({"error": "pandas is not installed in the kernel", "kind": "input"}))
        return
    if not isinstance(df, pd.DataFrame):
        print(json.dumps({"error": "%r is a %s, not a pandas DataFrame" % (name, type(df).__name__),
                          "kind": "input"}))
        return
    rows, ncols = df.shape
    sample = df if rows <= 100_000 else df.sample(100_000, random_state=0)
    cat_limit = max(20, int(0.05 * rows))
    datey = re.compile(r"\d{1,4}[-/.]\d{1,2}|[A-Za-z]{3,9}\.? \d{1,2}|\d{1,2} [A-Za-z]{3,9}|\d{8}T")

    def short(value, limit):
        text = " ".join(str(value).split())
        return text if len(text) <= limit else text[: limit - 3] + "..."

    def nunique(col):
        try:
            return int(col.nunique(dropna=True))
        except TypeError:
            return int(col.dropna().astype(str).nunique())

    def looks_like_dates(col):
        values = col.dropna()
        if values.empty:
            return False
        values = values.iloc[:200]
        if not all(isinstance(v, str) for v in values):
            return False
        if sum(bool(datey.search(v)) for v in values) < 0.8 * len(values):
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                parsed = pd.to_datetime(values, errors="coerce", format="mixed")
            except Exception:
                return False
        return parsed.notna().sum() >= 0.8 * len(values)

    columns, date_columns = [], []
    for i in range(ncols):
        col = df.iloc[:, i]
        dtype = col.dtype
        missing = int(col.isna().sum())
        unique = nunique(sample.iloc[:, i])
        if pd.api.types.is_bool_dtype(dtype):
            kind = "boolean"
        elif pd.api.types.is_numeric_dtype(dtype):
            kind = "numeric"
        elif isinstance(dtype, pd.CategoricalDtype):
            kind = "categorical"
        elif pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
            kind = "datetime"
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            kind = "categorical" if unique <= cat_limit else "text"
        else:
            kind = "other"
        if kind == "datetime":
            date_columns.append(str(df.columns[i]))
        elif kind in ("categorical", "text") and not isinstance(dtype, pd.CategoricalDtype):
            if looks_like_dates(col):
                date_columns.append(str(df.columns[i]))
        if i >= 60:
            continue
        first = col.first_valid_index() if missing < rows else None
        example = ""
        if first is not None:
            value = col.loc[first]
            if isinstance(value, pd.Series):
                value = value.iloc[0]
            example = short(value, 40)
        columns.append({
            "name": short(df.columns[i], 100), "dtype": str(dtype).replace("\n", " "),
            "kind": kind, "missing": missing, "unique": unique, "example": example,
        })
    with pd.option_context("display.max_colwidth", 30, "display.width", 160):
        head = df.head(5).to_string(max_cols=20, line_width=160)
    if len(head) > 2000:
        head = head[:2000] + "\n..."
    print(json.dumps({
        "name": name, "rows": int(rows), "cols": int(ncols), "columns": columns,
        "omitted_columns": max(0, ncols - 60), "date_columns": date_columns, "head": head,
    }, default=str))

try:
    __jupyter_analyst_frame_facts(__JA_NAME__)
except Exception as __jupyter_analyst_err:
    import json as __jupyter_analyst_json
    print(__jupyter_analyst_json.dumps({"error": "computing facts failed: %s: %s" % (
        type(__jupyter_analyst_err).__name__, __jupyter_analyst_err)}))
    del __jupyter_analyst_err, __jupyter_analyst_json
finally:
    del __jupyter_analyst_frame_facts
"""


def frame_facts_code(var: str) -> str:
    """Code that prints one JSON line of facts about DataFrame ``var`` (see ``render_facts``).

    Only a plain variable name is accepted: the code looks it up in the user namespace
    rather than evaluating an expression, so a missing name gives a clear message.
    """
    if not var.isidentifier():
        raise ValueError(f"not a variable name: {var!r}")
    return _FRAME_FACTS_TEMPLATE.replace("__JA_NAME__", repr(var))


def _json_objects(stdout: str) -> Iterator[dict[str, Any]]:
    """The JSON object lines helper code printed, last first (the user's prints may precede)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                yield data


def parse_facts(stdout: str) -> dict[str, Any]:
    """Parse the JSON line printed by :func:`frame_facts_code` (the last JSON object line).

    A name that is not defined raises ``MissingVariableError``, a value that is not a
    DataFrame ``InputError`` (both the user's to fix); code that failed or printed nothing
    usable raises ``KernelError`` (ours).
    """
    for data in _json_objects(stdout):
        if "error" in data:
            kind = data.get("kind")
            error = MissingVariableError if kind == "missing" else InputError if kind else KernelError
            raise error(str(data["error"]))
        return data
    raise KernelError(f"no facts in kernel output: {stdout[-300:]!r}")


USER_NAMES_CODE = r"""
def __jupyter_analyst_user_names():
    import json, re, sys, types
    from IPython import get_ipython
    ip = get_ipython()
    hidden, unset = ip.user_ns_hidden, object()
    ipython_own = re.compile(r"_+|_i+|_i?\d+|_[dios]h|__\w*__|__jupyter_analyst\w*")

    def origins(value):
        if isinstance(value, types.ModuleType):
            name = getattr(value, "__name__", None)
            return [name] if isinstance(name, str) else []
        name, home = getattr(value, "__name__", None), getattr(value, "__module__", None)
        if not isinstance(name, str) or not isinstance(home, str):
            return []
        out, parts = [], home.split(".")
        for i in range(len(parts), 0, -1):
            module = sys.modules.get(".".join(parts[:i]))
            # the module's own dict, not getattr: a lazy module's __getattr__ would import
            if module is not None and vars(module).get(name, unset) is value:
                out.append(".".join(parts[:i]) + "." + name)
        return out

    names = {}
    for name, value in list(ip.user_ns.items()):
        if not isinstance(name, str) or not name.isidentifier() or ipython_own.fullmatch(name):
            continue
        if hidden.get(name, unset) is value:
            continue
        try:
            names[name] = origins(value)
        except Exception:
            names[name] = []
    print(json.dumps({"user_names": names}))

try:
    __jupyter_analyst_user_names()
finally:
    del __jupyter_analyst_user_names
"""
"""Prints the names bound in the user's namespace, each with its origins (the dotted
import paths that give exactly its value: ``"pandas"`` for the module, every
``"pkg.mod.f"`` whose module holds that very function or class), as ``agent.names`` reads
them. IPython's own names are left out (``In``, ``Out``, ``get_ipython``, ``exit``,
``quit``, the ``_``/``_i``/``_1``/``_i1`` history and ``_ih``/``_oh``/``_dh``/``_sh``, dunders)
unless the user rebound them; so are this package's helpers. Modules are user names
too: ``pd = 3`` would break the user's ``pd``; ``import pandas as pd`` re-imports what it
holds, which its origin allows."""


def parse_user_names(stdout: str) -> dict[str, list[str]]:
    """The names printed by :data:`USER_NAMES_CODE`; ``KernelError`` when there are none."""
    for data in _json_objects(stdout):
        if isinstance(data.get("user_names"), dict):
            return {str(k): [str(o) for o in v] for k, v in data["user_names"].items()}
    raise KernelError(f"no user names in kernel output: {stdout[-300:]!r}")


TEARDOWN_CODE = r"""
def __jupyter_analyst_teardown():
    from IPython import get_ipython
    formatters = get_ipython().display_formatter.formatters
    for mime in ("application/vnd.jupyter-analyst.figure+json", "application/vnd.jupyter-analyst.frame+json"):
        formatters.pop(mime, None)

try:
    __jupyter_analyst_teardown()
finally:
    del __jupyter_analyst_teardown
"""
"""Removes the facts formatters ``SETUP_CODE`` installed, so the user's own later cells
don't save the private facts mime types into their notebook (kernels we don't own)."""
