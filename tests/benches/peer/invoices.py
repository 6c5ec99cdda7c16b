"""The script an analyst writes instead of ml-connector: page the Oracle
Fusion `invoices` resource with limit/offset, map each invoice to the 12
columns of mappings/bench/invoices.toml, write a .hyper with Tableau's Hyper
API and publish it with tableauserverclient (Overwrite).

Plain and serial on purpose: one request at a time, no concurrency.

Usage:
  invoices.py ORACLE_BASE_URL TOKEN_URL CLIENT_ID SCOPE \
              TABLEAU_URL SITE PAT_NAME PROJECT DATASOURCE WORK_DIR

ORACLE_BASE_URL is the REST base, e.g.
https://pod.example.com/fscmRestApi/resources/11.13.18.05. Secrets come from
the environment, never the command line: ORACLE_CLIENT_SECRET and
TABLEAU_PAT_SECRET. Prints a one-line summary (no secrets).
"""

import datetime
import os
import sys
import time
from decimal import Decimal

import requests
import tableauserverclient as TSC
from tableauhyperapi import (
    Connection,
    CreateMode,
    HyperProcess,
    Inserter,
    NOT_NULLABLE,
    NULLABLE,
    SqlType,
    TableDefinition,
    TableName,
    Telemetry,
)

PAGE = 499
FIELDS = ",".join(
    [
        "InvoiceId",
        "InvoiceNumber",
        "InvoiceAmount",
        "AmountPaid",
        "InvoiceCurrency",
        "InvoiceDate",
        "AccountingDate",
        "Supplier",
        "SupplierNumber",
        "BusinessUnit",
        "CanceledFlag",
        "LastUpdateDate",
    ]
)

# The 12 columns of mappings/bench/invoices.toml, same names and types.
COLUMNS = [
    TableDefinition.Column("Invoice ID", SqlType.big_int(), NOT_NULLABLE),
    TableDefinition.Column("Invoice Number", SqlType.text(), NOT_NULLABLE),
    TableDefinition.Column("Invoice Amount", SqlType.numeric(18, 2), NOT_NULLABLE),
    TableDefinition.Column("Amount Paid", SqlType.numeric(18, 2), NULLABLE),
    TableDefinition.Column("Currency", SqlType.text(), NOT_NULLABLE),
    TableDefinition.Column("Invoice Date", SqlType.date(), NOT_NULLABLE),
    TableDefinition.Column("Accounting Date", SqlType.date(), NULLABLE),
    TableDefinition.Column("Supplier", SqlType.text(), NOT_NULLABLE),
    TableDefinition.Column("Supplier Number", SqlType.text(), NOT_NULLABLE),
    TableDefinition.Column("Business Unit", SqlType.text(), NOT_NULLABLE),
    TableDefinition.Column("Canceled", SqlType.bool(), NOT_NULLABLE),
    TableDefinition.Column("Last Updated", SqlType.timestamp_tz(), NOT_NULLABLE),
]

CENT = Decimal("0.01")


def money(value):
    return None if value is None else Decimal(value).quantize(CENT)


def day(value):
    return None if value is None else datetime.date.fromisoformat(value)


def moment(value):
    return datetime.datetime.fromisoformat(value)


def to_row(item):
    return [
        int(item["InvoiceId"]),
        item["InvoiceNumber"],
        money(item["InvoiceAmount"]),
        money(item.get("AmountPaid")),
        item["InvoiceCurrency"],
        day(item["InvoiceDate"]),
        day(item.get("AccountingDate")),
        item["Supplier"],
        item["SupplierNumber"],
        item["BusinessUnit"],
        bool(item["CanceledFlag"]),
        moment(item["LastUpdateDate"]),
    ]


def token(session, token_url, client_id, secret, scope):
    response = session.post(
        token_url,
        auth=(client_id, secret),
        data={"grant_type": "client_credentials", "scope": scope},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()["access_token"]


def pages(session, base_url):
    """Every invoice, page by page (limit/offset), as lists of 12-column rows."""
    offset = 0
    while True:
        response = session.get(
            f"{base_url}/invoices",
            params={
                "limit": PAGE,
                "offset": offset,
                "onlyData": "true",
                "fields": FIELDS,
            },
            timeout=300,
        )
        response.raise_for_status()
        body = response.json(parse_float=Decimal)
        items = body.get("items", [])
        yield [to_row(item) for item in items]
        offset += len(items)
        if not body.get("hasMore") or not items:
            return


def extract(session, base_url, path):
    """Pulls every page into a new .hyper as it arrives; returns (rows, pages)."""
    count = 0
    pulled = 0
    with HyperProcess(telemetry=Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU) as hyper:
        with Connection(hyper.endpoint, path, CreateMode.CREATE_AND_REPLACE) as conn:
            conn.catalog.create_schema("Extract")
            table = TableDefinition(TableName("Extract", "Extract"), COLUMNS)
            conn.catalog.create_table(table)
            with Inserter(conn, table) as inserter:
                for rows in pages(session, base_url):
                    inserter.add_rows(rows)
                    count += len(rows)
                    pulled += 1
                inserter.execute()
    return count, pulled


def publish(server_url, site, pat_name, pat_secret, project_name, name, path):
    server = TSC.Server(server_url, use_server_version=True)
    auth = TSC.PersonalAccessTokenAuth(pat_name, pat_secret, site_id=site)
    with server.auth.sign_in(auth):
        project = next(p for p in TSC.Pager(server.projects) if p.name == project_name)
        item = TSC.DatasourceItem(project.id, name=name)
        return server.datasources.publish(item, path, TSC.Server.PublishMode.Overwrite)


def main():
    (
        base_url,
        token_url,
        client_id,
        scope,
        server_url,
        site,
        pat_name,
        project_name,
        datasource,
        work_dir,
    ) = sys.argv[1:11]
    started = time.monotonic()
    session = requests.Session()
    access = token(session, token_url, client_id, os.environ["ORACLE_CLIENT_SECRET"], scope)
    session.headers["Authorization"] = f"Bearer {access}"
    path = os.path.join(work_dir, "invoices.hyper")
    count, pulled = extract(session, base_url.rstrip("/"), path)
    written = time.monotonic()

    published = publish(
        server_url,
        site,
        pat_name,
        os.environ["TABLEAU_PAT_SECRET"],
        project_name,
        datasource,
        path,
    )
    done = time.monotonic()
    print(
        f"peer: {count} invoices in {pulled} pages; pull and write {written - started:.1f} s, "
        f"publish {done - written:.1f} s, "
        f"total {done - started:.1f} s; data source {published.name!r}"
    )


if __name__ == "__main__":
    main()
