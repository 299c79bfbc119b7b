"""SQL literals: a quote inside a string, dates and instants as DuckDB reads them back."""

from datetime import UTC, date, datetime, timedelta, timezone

import duckdb

from heapster_columnar._sql import literal


def test_literals_round_trip_through_duckdb() -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    name = literal("team's ns")
    assert con.sql(f"SELECT {name}").fetchall() == [("team's ns",)]
    assert con.sql(f"SELECT {literal(date(2024, 6, 1))}").fetchall() == [(date(2024, 6, 1),)]
    when = datetime(2024, 6, 1, 2, 0, 0, 123000, tzinfo=timezone(timedelta(hours=2)))
    (got,) = con.sql(f"SELECT {literal(when)}").fetchall()[0]
    assert got == datetime(2024, 6, 1, 0, 0, 0, 123000, tzinfo=UTC)
