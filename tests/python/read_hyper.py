"""Reads a .hyper file through Tableau's own Python Hyper API and prints JSON.

Usage: read_hyper.py FILE [SCHEMA TABLE]

Without SCHEMA TABLE every table of the file is read. Output, one JSON
object on stdout:

    {"tables": [{"schema": "Extract", "table": "Extract",
                 "columns": [{"name": "Id", "type": "BIG_INT",
                              "sql": "BIG_INT", "nullable": false}, ...],
                 "rows": [["1", "abc", null, ...], ...]}]}

Values are exact strings so a test can compare them without float or
decimal parsing: integers in decimal, doubles as Python's repr, NUMERICs in
plain positional notation at their declared scale, booleans as true/false,
dates as YYYY-MM-DD, timestamps as YYYY-MM-DDTHH:MM:SS.ffffff followed by
the UTC offset (+00:00), NULL as null. Rows come back in storage order.

Only SELECTs and catalog calls run against the file. hyperd is started and
stopped by the Hyper API itself, with its logs in a temporary directory so
nothing lands in the caller's working directory.
"""

import decimal
import json
import sys
import tempfile

from tableauhyperapi import (
    Connection,
    HyperProcess,
    Nullability,
    TableName,
    Telemetry,
    TypeTag,
)


# Enough digits for any NUMERIC(38, s); Inexact trapped so nothing rounds.
EXACT = decimal.Context(prec=80, traps=[decimal.Inexact, decimal.InvalidOperation])


def exact(value, sql_type):
    """One value as an exact string (or None for NULL)."""
    tag = sql_type.tag
    if value is None:
        return None
    if tag == TypeTag.BOOL:
        return "true" if value else "false"
    if tag in (TypeTag.BIG_INT, TypeTag.INT, TypeTag.SMALL_INT):
        return str(int(value))
    if tag == TypeTag.DOUBLE:
        return repr(float(value))
    if tag == TypeTag.NUMERIC:
        assert isinstance(value, decimal.Decimal), type(value)
        # The Hyper API drops trailing zeros for precision <= 18 (Decimal('-0.5')
        # for -0.50 in NUMERIC(18,2)); show the declared scale, exactly.
        step = decimal.Decimal(1).scaleb(-sql_type.scale)
        return format(value.quantize(step, context=EXACT), "f")
    if tag == TypeTag.DATE:
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if tag in (TypeTag.TIMESTAMP, TypeTag.TIMESTAMP_TZ):
        text = (
            f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
        )
        if tag == TypeTag.TIMESTAMP_TZ:
            offset = value.utcoffset()
            if offset is None or offset.total_seconds() != 0:
                raise ValueError(f"timestamptz not in UTC: {value!r}")
            text += "+00:00"
        return text
    if tag in (TypeTag.TEXT, TypeTag.VARCHAR, TypeTag.CHAR):
        return str(value)
    raise ValueError(f"unexpected type {tag} for value {value!r}")


def read_table(connection, table):
    definition = connection.catalog.get_table_definition(table)
    columns = [
        {
            "name": column.name.unescaped,
            "type": column.type.tag.name,
            "sql": str(column.type),
            "nullable": column.nullability == Nullability.NULLABLE,
        }
        for column in definition.columns
    ]
    types = [column.type for column in definition.columns]
    rows = []
    with connection.execute_query(f"SELECT * FROM {table}") as result:
        for row in result:
            rows.append([exact(v, t) for v, t in zip(row, types)])
    return {
        "schema": table.schema_name.name.unescaped,
        "table": table.name.unescaped,
        "columns": columns,
        "rows": rows,
    }


def main(argv):
    if len(argv) not in (2, 4):
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[1]
    with tempfile.TemporaryDirectory() as logs:
        parameters = {"log_dir": logs}
        with HyperProcess(
            Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters=parameters
        ) as hyper:
            with Connection(hyper.endpoint, path) as connection:
                if len(argv) == 4:
                    tables = [TableName(argv[2], argv[3])]
                else:
                    tables = [
                        table
                        for schema in connection.catalog.get_schema_names()
                        for table in connection.catalog.get_table_names(schema)
                    ]
                out = {"tables": [read_table(connection, t) for t in tables]}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
