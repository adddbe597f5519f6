"""What the rule-based baseline analyst writes (see ``baseline.py``, which decides when).

Each function returns the source of one notebook cell. The cells are what a careful
analyst would type: explicit column names (always ``repr``-quoted, so spaces, quotes and unicode are
safe), one idea per cell, titled and labelled charts. They are also training data for small
models, so they avoid clever tricks and print their key results as fixed one-line sentences
(``"Strongest correlation: a vs b: r = 0.871"``) that ``baseline_answer`` reads back to
write the conclusions without inventing numbers.

``level`` picks how ambitious a chart cell is: 0 uses seaborn, 1 plain matplotlib/pandas
(used when seaborn is missing, and as the simpler rewrite after an error), 2 prints the
numbers only (when matplotlib is missing, or a level-1 cell already failed).
"""

from __future__ import annotations

SAMPLE_ROWS = 50_000
"""Frames larger than this are sampled for plots (statistics still use every row)."""


def _lines(*parts: str | list[str] | None) -> str:
    out: list[str] = []
    for part in parts:
        if part is None:
            continue
        out.extend(part if isinstance(part, list) else [part])
    return "\n".join(out).strip("\n")


def _finish(title: str, xlabel: str, ylabel: str) -> list[str]:
    """Title, axis labels and show: every chart gets all of them."""
    return [
        f"ax.set_title({title})",
        f"ax.set_xlabel({xlabel})",
        f"ax.set_ylabel({ylabel})",
        "plt.tight_layout()",
        "plt.show()",
    ]


def overview(var: str, level: int) -> str:
    """First cell: the imports the analysis uses, then shape and column types."""
    imports = ["import numpy as np"]
    if level <= 1:
        imports.append("import matplotlib.pyplot as plt")
    if level == 0:
        imports += ["import seaborn as sns", "", 'sns.set_theme(style="whitegrid")']
    return _lines(
        imports,
        'pd.set_option("display.width", 120)',
        'pd.set_option("display.max_columns", 30)',
        "",
        f'print(f"Shape: {{{var}.shape[0]}} rows x {{{var}.shape[1]}} columns")',
        f"print({var}.dtypes.to_string())",
    )


def missing(var: str, chart: bool, level: int) -> str:
    """Missing values per column, duplicate rows, and a bar chart when anything is missing."""
    code = [
        f"missing = {var}.isna().sum().sort_values(ascending=False)",
        f"missing_pct = missing / len({var}) * 100",
        "if missing.sum() == 0:",
        '    print("No missing values")',
        "else:",
        '    table = pd.DataFrame({"missing": missing, "percent": missing_pct.round(1)})',
        '    print(table[table["missing"] > 0].head(10).to_string())',
        f'print(f"Missing cells: {{missing.sum()}} of {{{var}.size}} ({{missing.sum() / {var}.size * 100:.2f}}%)")',  # noqa: E501
        "try:",
        f"    n_duplicates = {var}.duplicated().sum()",
        "except TypeError:  # cells holding lists or dicts cannot be hashed; compare their text",
        f"    n_duplicates = {var}.astype(str).duplicated().sum()",
        'print(f"Duplicate rows: {n_duplicates}")',
    ]
    if chart and level <= 1:
        code += [
            "",
            "worst = missing_pct[missing_pct > 0].head(15)",
            "fig, ax = plt.subplots(figsize=(8, 0.35 * len(worst) + 1.5))",
        ]
        if level == 0:
            code.append(
                'sns.barplot(x=worst.values, y=worst.index.astype(str), orient="h", color="tab:orange", ax=ax)'  # noqa: E501
            )
        else:
            code.append('worst.sort_values().plot.barh(ax=ax, color="tab:orange")')
        code += _finish('"Share of missing values per column"', '"% of rows missing"', '"Column"')
    return _lines(code)


def describe(var: str, has_numeric: bool, has_categorical: bool) -> str:
    """Summary statistics; selected by dtype, so it needs no column names (labels may be odd)."""
    code: list[str] = []
    if has_numeric:
        code += [
            f'numeric = {var}.select_dtypes(include="number")',
            "print(numeric.iloc[:, :12].describe().T.round(3).to_string())",
        ]
    if has_categorical:
        code += [
            f'categorical = {var}.select_dtypes(include=["object", "string", "category", "bool"])',
            "print(categorical.iloc[:, :12].describe().T.to_string())",
        ]
    return _lines(code)


def describe_simple(var: str) -> str:
    """The fix for :func:`describe`: numeric summary only (odd cells break ``describe``)."""
    return _lines(
        f'print({var}.select_dtypes(include="number").iloc[:, :12].describe().T.round(3).to_string())'
    )


def clean(
    var: str,
    out: str,
    *,
    dedupe: bool,
    strip_text: bool,
    date_cols: list[str],
    numeric_text_cols: list[str],
    nullable_cols: list[str],
    empty_cols: list[str],
    sample: bool,
) -> str:
    """Cleaning into a copy ``out``: tidy labels, strip text, parse dates/numbers, drop duplicates."""
    code = [
        f"{out} = {var}.copy()",
        f'{out}.columns = [" ".join(str(c).split()) for c in {out}.columns]  # labels as plain text',
    ]
    if dedupe:
        code += [
            "seen = {}",
            "labels = []",
            f"for label in {out}.columns:",
            "    seen[label] = seen.get(label, 0) + 1",
            '    labels.append(label if seen[label] == 1 else f"{label}_{seen[label] - 1}")',
            f"{out}.columns = labels",
            'print("Renamed repeated column labels with a _1, _2... suffix")',
        ]
    if empty_cols:
        code += [
            f"{out} = {out}.drop(columns={empty_cols!r})",
            f'print("Dropped columns with no values:", {empty_cols!r})',
        ]
    if strip_text:
        code += [
            "",
            "# Strip stray whitespace; empty strings become missing values",
            f'for col in {out}.select_dtypes(include=["object", "string"]).columns:',
            f"    if pd.api.types.is_string_dtype({out}[col]):",
            f'        {out}[col] = {out}[col].str.strip().replace("", np.nan)',
        ]
    if date_cols:
        code += [
            "",
            f"for col in {date_cols!r}:",
            "    try:",
            f'        parsed = pd.to_datetime({out}[col], errors="coerce")',
            f"        if parsed.notna().sum() < 0.8 * {out}[col].notna().sum():  # day-first dates such as 31/12/2020?",  # noqa: E501
            f'            parsed = pd.to_datetime({out}[col], errors="coerce", dayfirst=True)',
            "    except (ValueError, TypeError):  # e.g. mixed time zones",
            f'        parsed = pd.to_datetime({out}[col], errors="coerce", utc=True)',
            f"    if parsed.notna().sum() >= 0.8 * {out}[col].notna().sum():",
            f"        unparsed = int(parsed.isna().sum() - {out}[col].isna().sum())",
            f"        {out}[col] = parsed",
            '        print(f"Parsed {col!r} as dates ({unparsed} values could not be parsed)")',
            "    else:",
            '        print(f"Kept {col!r} as text: most values are not dates")',
        ]
    if numeric_text_cols:
        code += [
            "",
            "# Numbers stored as text (thousands separators, currency or % signs)",
            f"for col in {numeric_text_cols!r}:",
            f'    digits = {out}[col].astype(str).str.replace(r"[,$€£%\\s]", "", regex=True)',
            '    numbers = pd.to_numeric(digits, errors="coerce")',
            f"    if numbers.notna().sum() >= 0.9 * {out}[col].notna().sum():",
            f"        unparsed = int(numbers.isna().sum() - {out}[col].isna().sum())",
            f"        {out}[col] = numbers",
            '        print(f"Converted {col!r} to numbers ({unparsed} values could not be parsed)")',
            "    else:",
            '        print(f"Kept {col!r} as text: too many values are not numbers")',
        ]
    if nullable_cols:
        code += [
            "",
            "# Nullable integer/float columns as float64: plotting libraries expect NaN, not pd.NA",
            f'{out}[{nullable_cols!r}] = {out}[{nullable_cols!r}].astype("float64")',
        ]
    code += [
        "",
        f"rows_before = len({out})",
        "try:",
        f"    {out} = {out}.drop_duplicates()",
        "except TypeError:  # cells holding lists or dicts cannot be compared; keep every row",
        "    pass",
        f'print(f"Dropped {{rows_before - len({out})}} exact duplicate rows")',
        f'for col in {out}.select_dtypes(include=["datetime", "datetimetz"]).columns:',
        f"    dates = {out}[col].dropna()",
        "    if not dates.empty:",
        '        print(f"Date range of {col!r}: {dates.min():%Y-%m-%d} to {dates.max():%Y-%m-%d} '
        '({dates.nunique()} distinct values)")',
    ]
    if sample:
        code += [
            f"plot_df = {out}.sample({SAMPLE_ROWS:_}, random_state=0) if len({out}) > {SAMPLE_ROWS:_} else {out}",  # noqa: E501
            'print(f"Charts use a random sample of {len(plot_df)} rows")',
        ]
    code.append(f'print(f"Cleaned frame {out}: {{{out}.shape[0]}} rows x {{{out}.shape[1]}} columns")')
    return _lines(code)


def clean_simple(var: str, out: str, sample: bool) -> str:
    """The fix for :func:`clean`: an unchanged copy, so every later cell still has its frame."""
    code = [f"{out} = {var}.copy()"]
    if sample:
        code.append(
            f"plot_df = {out}.sample({SAMPLE_ROWS:_}, random_state=0) if len({out}) > {SAMPLE_ROWS:_} else {out}"  # noqa: E501
        )
    code.append(
        f'print(f"Cleaned frame {out}: {{{out}.shape[0]}} rows x {{{out}.shape[1]}} columns (unchanged copy)")'  # noqa: E501
    )
    return _lines(code)


def distribution(frame: str, plot_frame: str, target: str, level: int, kde: bool) -> str:
    """Histogram (+KDE) of the target and its summary statistics."""
    code = [f"target = {target!r}", f"values = {frame}[target].dropna()"]
    plot_values = "values" if plot_frame == frame else f"{plot_frame}[target].dropna()"
    if level <= 1:
        code.append("fig, ax = plt.subplots(figsize=(8, 4))")
        if level == 0:
            code.append(f"sns.histplot(x={plot_values}, bins=30, kde={kde}, ax=ax)")
        else:
            code.append(f"ax.hist({plot_values}, bins=30)")
        code += _finish('f"Distribution of {target}"', "target", '"Number of rows"')
    code += [
        'print(f"Summary of {target}: mean = {values.mean():.3f}, median = {values.median():.3f}, "',
        '      f"std = {values.std():.3f}, min = {values.min():.3f}, max = {values.max():.3f}, skew = {values.skew():.2f}")',  # noqa: E501
    ]
    return _lines(code)


def outliers(frame: str, plot_frame: str, target: str, level: int) -> str:
    """Outliers by the 1.5 x IQR rule, with a box plot."""
    code = [
        f"target = {target!r}",
        f"values = {frame}[target].dropna()",
        "q1, q3 = values.quantile([0.25, 0.75])",
        "lower, upper = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)",
        "n_out = int(((values < lower) | (values > upper)).sum())",
    ]
    plot_values = "values" if plot_frame == frame else f"{plot_frame}[target].dropna()"
    if level <= 1:
        code.append("fig, ax = plt.subplots(figsize=(8, 2.5))")
        if level == 0:
            code.append(f"sns.boxplot(x={plot_values}, ax=ax)")
            code += _finish('f"Spread and outliers of {target}"', "target", '"All rows"')
        else:
            code[-1] = "fig, ax = plt.subplots(figsize=(4, 5))"
            code.append(f"ax.boxplot({plot_values})")
            code += _finish('f"Spread and outliers of {target}"', '"All rows"', "target")
    code += [
        'print(f"Outliers in {target} (outside {lower:.3f} to {upper:.3f}, 1.5 x IQR rule): "',
        '      f"{n_out} rows ({n_out / len(values) * 100:.1f}%)")',
    ]
    return _lines(code)


def counts(frame: str, col: str, level: int) -> str:
    """Bar chart of the most common values of a categorical column (top 10)."""
    code = [
        f"col = {col!r}",
        f"counts = {frame}[col].value_counts().head(10)",
        "print(counts.to_string())",
    ]
    if level <= 1:
        code.append("fig, ax = plt.subplots(figsize=(8, 0.4 * len(counts) + 1.5))")
        if level == 0:
            code.append(
                'sns.barplot(x=counts.values, y=counts.index.astype(str), orient="h", color="tab:blue", ax=ax)'  # noqa: E501
            )
        else:
            code.append("ax.barh(counts.index.astype(str)[::-1], counts.values[::-1])")
        code += _finish('f"Most common values of {col} (top {len(counts)})"', '"Number of rows"', "col")
    code += [
        f"share = counts.iloc[0] / {frame}[col].notna().sum() * 100",
        f'print(f"{{{frame}[col].nunique()}} distinct values of {{col}}")',
        'print(f"Most common {col}: {counts.index[0]} ({counts.iloc[0]} rows, {share:.1f}% of non-missing)")',
    ]
    return _lines(code)


def correlation(frame: str, cols: list[str], target: str | None, level: int) -> str:
    """Correlation matrix heatmap and the strongest pairs, printed as parseable lines."""
    n = len(cols)
    size = (min(3 + 0.8 * n, 12), min(2.5 + 0.7 * n, 10))
    code = [f"num_cols = {cols!r}", f"corr = {frame}[num_cols].corr()"]
    if level <= 1:
        code.append(f"fig, ax = plt.subplots(figsize=({size[0]:.1f}, {size[1]:.1f}))")
        if level == 0:
            annot = "True" if n <= 10 else "False"
            code.append(
                f'sns.heatmap(corr, annot={annot}, fmt=".2f", cmap="coolwarm", vmin=-1, vmax=1, ax=ax)'
            )
        else:
            code += [
                'image = ax.imshow(corr.values, cmap="coolwarm", vmin=-1, vmax=1)',
                "ax.set_xticks(range(len(num_cols)), num_cols, rotation=90)",
                "ax.set_yticks(range(len(num_cols)), num_cols)",
                "fig.colorbar(image, ax=ax)",
            ]
        code += _finish('"Correlation between numeric columns"', '"Column"', '"Column"')
    code += [
        "pairs = [(a, b, corr.loc[a, b]) for i, a in enumerate(num_cols) for b in num_cols[i + 1:]]",
        "pairs = sorted((p for p in pairs if pd.notna(p[2])), key=lambda p: abs(p[2]), reverse=True)",
        "for a, b, r in pairs[:5]:",
        '    print(f"{a} vs {b}: r = {r:.3f}")',
        "if pairs:",
        "    a, b, r = pairs[0]",
        '    print(f"Strongest correlation: {a} vs {b}: r = {r:.3f}")',
    ]
    if target is not None:
        code += [
            f"target = {target!r}",
            "with_target = corr[target].drop(target).dropna().sort_values(key=abs, ascending=False)",
            "if not with_target.empty:",
            '    print(f"Strongest correlation with {target}: {with_target.index[0]}: r = {with_target.iloc[0]:.3f}")',  # noqa: E501
        ]
    return _lines(code)


def scatter(frame: str, plot_frame: str, x: str, y: str, hue: str | None, level: int) -> str:
    """Scatter plot of the most correlated pair (coloured by the main group when small)."""
    code = [f"x, y = {x!r}, {y!r}", "fig, ax = plt.subplots(figsize=(7, 5))"]
    if level == 0:
        hue_arg = f", hue={hue!r}" if hue else ""
        code.append(f"sns.scatterplot(data={plot_frame}, x=x, y=y{hue_arg}, alpha=0.7, ax=ax)")
    else:
        code.append(f"ax.scatter({plot_frame}[x], {plot_frame}[y], alpha=0.6)")
    code += _finish('f"{y} vs {x}"', "x", "y")
    code += [
        f"pair = {frame}[[x, y]].dropna()",
        'print(f"{len(pair)} rows with both values; r = {pair[x].corr(pair[y]):.3f}")',
    ]
    return _lines(code)


def group_compare(frame: str, plot_frame: str, target: str, group: str, level: int) -> str:
    """Target by group (top 10 groups): count/mean/median/std table and a box plot."""
    code = [
        f"target, group = {target!r}, {group!r}",
        f"sizes = {frame}[group].value_counts()",
        "top_groups = sizes[sizes >= min(5, sizes.max())].index[:10]  # the 10 largest groups, 5+ rows each",
        f"subset = {frame}[{frame}[group].isin(top_groups)]",
        "summary = (",
        "    subset.groupby(group, observed=True)[target]",
        '    .agg(["count", "mean", "median", "std"])',
        '    .sort_values("mean", ascending=False)',
        ")",
        "print(summary.round(3).to_string())",
    ]
    if level <= 1:
        plot_subset = (
            "subset" if plot_frame == frame else f"{plot_frame}[{plot_frame}[group].isin(top_groups)]"
        )
        code.append("fig, ax = plt.subplots(figsize=(8, 0.5 * len(summary) + 2))")
        if level == 0:
            code += [
                f"sns.boxplot(x={plot_subset}[target], y={plot_subset}[group].astype(str),",
                '            order=summary.index.astype(str), orient="h", ax=ax)',
            ]
        else:
            code += [
                'means = summary["mean"].sort_values()',
                "ax.barh(means.index.astype(str), means.values)",
            ]
        xlabel = "target" if level == 0 else 'f"mean {target}"'
        code += _finish('f"{target} by {group}"', xlabel, "group")
    code += [
        "best, worst = summary.index[0], summary.index[-1]",
        'print(f"Highest mean {target}: {group} = {best} '
        "(mean = {summary.loc[best, 'mean']:.3f}, n = {int(summary.loc[best, 'count'])})\")",
        'print(f"Lowest mean {target}: {group} = {worst} '
        "(mean = {summary.loc[worst, 'mean']:.3f}, n = {int(summary.loc[worst, 'count'])})\")",
    ]
    return _lines(code)


def crosstab(frame: str, a: str, b: str, level: int) -> str:
    """How two categorical columns co-occur (top 10 values of each), as a heatmap."""
    code = [
        f"a, b = {a!r}, {b!r}",
        f"top_a = {frame}[a].value_counts().index[:10]",
        f"top_b = {frame}[b].value_counts().index[:10]",
        f"subset = {frame}[{frame}[a].isin(top_a) & {frame}[b].isin(top_b)]",
        "table = pd.crosstab(subset[a], subset[b])",
        "print(table.to_string())",
    ]
    if level <= 1:
        code.append("fig, ax = plt.subplots(figsize=(8, 0.4 * len(table) + 2))")
        if level == 0:
            code.append('sns.heatmap(table, annot=True, fmt="d", cmap="Blues", ax=ax)')
        else:
            code += [
                'image = ax.imshow(table.values, cmap="Blues")',
                "ax.set_xticks(range(table.shape[1]), table.columns.astype(str), rotation=90)",
                "ax.set_yticks(range(table.shape[0]), table.index.astype(str))",
                "fig.colorbar(image, ax=ax)",
            ]
        code += _finish('f"Rows by {a} and {b}"', "b", "a")
    code += [
        "i, j = np.unravel_index(table.values.argmax(), table.shape)",
        'print(f"Most frequent combination: {a} = {table.index[i]} and {b} = {table.columns[j]} '
        '({table.values[i, j]} rows)")',
    ]
    return _lines(code)


def trend(
    frame: str,
    date_col: str,
    target: str | None,
    freq: str | None,
    period: str,
    dated: bool,
    hue: str | None,
    level: int,
) -> str:
    """Target mean (or row count) over time, per ``freq`` period, else per distinct value.

    ``period`` is text inside an f-string ("month", or "{date_col}" for a numeric year
    column); ``dated`` says whether the keys are timestamps (formatted as dates).
    """
    key = f'pd.Grouper(key=date_col, freq="{freq}")' if freq else "date_col"
    fmt = ":%Y-%m-%d" if dated else ""
    what = f"mean {{target}} per {period}" if target else f"rows per {period}"
    code = [f"date_col = {date_col!r}"]
    if target:
        code += [f"target = {target!r}", f"trend = {frame}.groupby({key})[target].mean().dropna()"]
    else:
        code.append(f"trend = {frame}.groupby({key}).size()")
    if level <= 1:
        code.append("fig, ax = plt.subplots(figsize=(10, 4))")
        if level == 0 and hue and target:
            code += [
                f"top_groups = {frame}[{hue!r}].value_counts().index[:8]",
                "by_group = (",
                f"    {frame}[{frame}[{hue!r}].isin(top_groups)]",
                f"    .groupby([{key}, {hue!r}], observed=True)[target].mean()",
                "    .reset_index()",
                ")",
                f"sns.lineplot(data=by_group, x=date_col, y=target, hue={hue!r}, ax=ax)",
            ]
        elif level == 0:
            code.append(
                'sns.lineplot(x=trend.index, y=trend.values, marker="o" if len(trend) <= 40 else None, ax=ax)'
            )
        else:
            code.append("ax.plot(trend.index, trend.values)")
        ylabel = 'f"mean {target}"' if target else '"Number of rows"'
        code += _finish(f'f"{what[0].upper() + what[1:]} over time"', "date_col", ylabel)
        if dated:
            code.insert(-2, "fig.autofmt_xdate()")
    code += [
        "if not trend.empty:",
        f'    print(f"Trend of {what}: {{trend.iloc[0]:.3f}} ({{trend.index[0]{fmt}}}) -> '
        f'{{trend.iloc[-1]:.3f}} ({{trend.index[-1]{fmt}}}), {{len(trend)}} periods")',
        f'    print(f"Peak of {what}: {{trend.max():.3f}} ({{trend.idxmax(){fmt}}})")',
    ]
    return _lines(code)


def ecdf(frame: str, target: str, level: int) -> str:
    """Cumulative distribution of the target: shows the quantiles at a glance."""
    code = [
        f"target = {target!r}",
        f"values = {frame}[target].dropna().sort_values()",
        "fig, ax = plt.subplots(figsize=(8, 4))",
    ]
    if level == 0:
        code.append("sns.ecdfplot(x=values, ax=ax)")
    else:
        code.append("ax.plot(values.values, np.arange(1, len(values) + 1) / len(values))")
    code += _finish('f"Cumulative distribution of {target}"', "target", '"Share of rows at or below"')
    code.append(
        'print(f"Quartiles of {target}: {values.quantile(0.25):.3f}, {values.quantile(0.5):.3f}, {values.quantile(0.75):.3f}")'  # noqa: E501
    )
    return _lines(code)


def pareto(frame: str, col: str) -> str:
    """How concentrated a categorical column is: cumulative share of its top values."""
    return _lines(
        f"col = {col!r}",
        f"shares = {frame}[col].value_counts(normalize=True).head(20).cumsum() * 100",
        "fig, ax = plt.subplots(figsize=(8, 4))",
        'ax.plot(range(1, len(shares) + 1), shares.values, marker="o")',
        _finish(
            'f"Cumulative share of rows covered by the top values of {col}"',
            '"Number of top values"',
            '"% of non-missing rows"',
        ),
        "top = min(3, len(shares))",
        'print(f"The top {top} values of {col} cover {shares.iloc[top - 1]:.1f}% of non-missing rows")',
    )


def positions(frame: str, col: str) -> str:
    """Where each value sits in the row order: reveals sorted or blocked data collection."""
    return _lines(
        f"col = {col!r}",
        f"top = {frame}[col].value_counts().index[:10]",
        f'positions = pd.DataFrame({{"row": np.arange(len({frame})), col: {frame}[col].to_numpy()}})',
        "positions = positions[positions[col].isin(top)]",
        "fig, ax = plt.subplots(figsize=(9, 0.4 * len(top) + 1.5))",
        'ax.scatter(positions["row"], positions[col].astype(str), s=6, alpha=0.5)',
        _finish('f"Where each value of {col} occurs in the row order"', '"Row position"', "col"),
        "changes = int((positions[col] != positions[col].shift()).sum()) - 1",
        'print(f"{col} changes value {changes} times along {len(positions)} rows")',
    )


def text_lengths(frame: str, col: str, level: int) -> str:
    """Histogram of the length of text values: a view of free-text columns."""
    code = [
        f"col = {col!r}",
        f"lengths = {frame}[col].dropna().astype(str).str.len()",
        "fig, ax = plt.subplots(figsize=(8, 4))",
        "sns.histplot(x=lengths, bins=30, ax=ax)" if level == 0 else "ax.hist(lengths, bins=30)",
    ]
    code += _finish('f"Length of {col} values"', '"Characters"', '"Number of rows"')
    code.append('print(f"Length of {col} values: median = {lengths.median():.1f}, max = {lengths.max()}")')
    return _lines(code)
