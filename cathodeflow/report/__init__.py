"""Report: Table 1 (CSV, Markdown), figures (Fig. 7–9 style PNGs) and an HTML page.

Entry points: :func:`cathodeflow.report.build.build_report` (tables in memory) and
:func:`cathodeflow.report.build.report_tables` (a folder of Parquet tables). Importing this
package loads neither matplotlib's pyplot nor any backend; figures are drawn with the Agg
canvas.
"""


def __getattr__(name):
    if name in ("build_report", "report_tables", "table1"):
        from . import build

        return getattr(build, name)
    raise AttributeError(name)
