"""Round trip against the Tableau sandbox with the official, unmodified
Python client (tableauserverclient) and Tableau's Hyper API.

Usage: tsc_roundtrip.py SERVER_URL SITE PAT_NAME PROJECT WORK_DIR WEBHOOK_URL
with the PAT secret in the TSC_PAT_SECRET environment variable.

Exits non-zero with a message naming the mismatch on any failure; prints
"tsc round trip: OK" at the end.
"""

import os
import sys
import uuid
import zipfile
from decimal import Decimal

import tableauserverclient as TSC
from tableauhyperapi import (
    Connection,
    CreateMode,
    HyperProcess,
    NOT_NULLABLE,
    Inserter,
    SqlType,
    TableDefinition,
    TableName,
    Telemetry,
)


def fail(message):
    print(f"tsc round trip FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def columns():
    return [
        TableDefinition.Column("id", SqlType.big_int(), NOT_NULLABLE),
        TableDefinition.Column("name", SqlType.text()),
        TableDefinition.Column("amount", SqlType.numeric(18, 2)),
    ]


def write_hyper(hyper, path, table, rows):
    with Connection(hyper.endpoint, path, CreateMode.CREATE_AND_REPLACE) as conn:
        conn.catalog.create_schema("Extract")
        definition = TableDefinition(TableName("Extract", table), columns())
        conn.catalog.create_table(definition)
        with Inserter(conn, definition) as inserter:
            inserter.add_rows(rows)
            inserter.execute()


def read_rows(hyper, path):
    with Connection(hyper.endpoint, path) as conn:
        return [
            tuple(row)
            for row in conn.execute_list_query(
                'SELECT "id", "name", "amount" FROM "Extract"."Extract" ORDER BY "id"'
            )
        ]


def extract_of(tdsx_path, work):
    """The .hyper inside a downloaded .tdsx (next to a .tds)."""
    check(tdsx_path.endswith(".tdsx"), f"download path {tdsx_path!r}, expected a .tdsx")
    with zipfile.ZipFile(tdsx_path) as archive:
        names = archive.namelist()
        check(any(n.endswith(".tds") for n in names), f"no .tds in {names}")
        hypers = [n for n in names if n.endswith(".hyper")]
        check(len(hypers) == 1, f"expected one .hyper in {names}")
        target = os.path.join(work, "unzipped", os.path.basename(tdsx_path))
        return archive.extract(hypers[0], target)


def main():
    if len(sys.argv) != 7:
        fail(__doc__)
    server_url, site, pat_name, project_name, work, hook_url = sys.argv[1:7]
    secret = os.environ.get("TSC_PAT_SECRET") or fail("TSC_PAT_SECRET is not set")
    os.makedirs(work, exist_ok=True)
    base_path = os.path.join(work, "tsc_orders.hyper")
    changes_path = os.path.join(work, "changes.hyper")

    with HyperProcess(Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU) as hyper:
        write_hyper(
            hyper,
            base_path,
            "Extract",
            [[1, "one", Decimal("1.50")], [2, "two", Decimal("2.50")], [3, "three", Decimal("0.25")]],
        )
        write_hyper(hyper, changes_path, "changes", [[2, "TWO", Decimal("22.00")], [4, "four", Decimal("4.00")]])

        server = TSC.Server(server_url, use_server_version=True)
        auth = TSC.PersonalAccessTokenAuth(pat_name, secret, site_id=site)
        with server.auth.sign_in(auth):
            check(server.version == "3.28", f"server version {server.version}, expected 3.28")

            projects = list(TSC.Pager(server.projects))
            same_name = [p for p in projects if p.name == project_name]
            check(len(same_name) == 2, f"expected a top-level and a nested {project_name!r}: {same_name!r}")
            project = next((p for p in same_name if p.parent_id is None), None)
            check(project is not None, f"no top-level project {project_name!r} in {same_name!r}")

            hook = TSC.WebhookItem()
            hook.name = "tsc-created"
            hook.url = hook_url
            hook.event = "datasource-created"
            hook = server.webhooks.create(hook)
            check(hook.id, "webhook create returned no id")
            hooks, _ = server.webhooks.get()
            check([h.id for h in hooks] == [hook.id], f"webhook list {[h.id for h in hooks]}")
            check(hooks[0].event == "datasource-created", f"webhook event {hooks[0].event!r}")

            item = TSC.DatasourceItem(project.id, name="tsc_orders")
            published = server.datasources.publish(item, base_path, TSC.Server.PublishMode.CreateNew)
            check(published.id and published.name == "tsc_orders", f"publish returned {published!r}")
            try:
                server.datasources.publish(item, base_path, TSC.Server.PublishMode.CreateNew)
                fail("a second CreateNew publish did not fail")
            except TSC.ServerResponseError as error:
                check(error.code == "403007", f"second publish error {error.code}, expected 403007")

            found = server.datasources.filter(name="tsc_orders")
            found = list(found)
            check(len(found) == 1 and found[0].id == published.id, f"find by name gave {found!r}")
            check(found[0].project_name == project_name, f"project name {found[0].project_name!r}")
            server.datasources.populate_connections(found[0])
            check(len(found[0].connections) == 1, "expected one connection")

            actions = [
                {
                    "action": "upsert",
                    "source-schema": "Extract",
                    "source-table": "changes",
                    "target-schema": "Extract",
                    "target-table": "Extract",
                    "condition": {"op": "eq", "target-col": "id", "source-col": "id"},
                },
                {
                    "action": "delete",
                    "target-schema": "Extract",
                    "target-table": "Extract",
                    "condition": {"op": "lt", "target-col": "amount", "const": {"type": "double", "v": 1}},
                },
            ]
            request_id = str(uuid.uuid4())
            job = server.datasources.update_hyper_data(
                published, request_id=request_id, actions=actions, payload=changes_path
            )
            check(job.type == "UpdateUploadedFile", f"job type {job.type!r}")
            job = server.jobs.wait_for_job(job, timeout=60)
            check(job.finish_code == 0, f"update job finish code {job.finish_code}")

            again = server.datasources.update_hyper_data(
                published, request_id=request_id, actions=actions, payload=changes_path
            )
            check(again.id == job.id, "a repeated RequestID did not return the original job")

            downloaded = server.datasources.download(published.id, filepath=os.path.join(work, "downloaded"))
            rows = read_rows(hyper, extract_of(downloaded, work))
            want = [(1, "one", Decimal("1.50")), (2, "TWO", Decimal("22.00")), (4, "four", Decimal("4.00"))]
            check(rows == want, f"rows after update {rows!r}, expected {want!r}")

            bad = [dict(actions[0], **{"source-table": "nope"})]
            failing = server.datasources.update_hyper_data(
                published, request_id=str(uuid.uuid4()), actions=bad, payload=changes_path
            )
            try:
                server.jobs.wait_for_job(failing, timeout=60)
                fail("an update naming a missing table did not fail")
            except TSC.JobFailedException as error:
                notes = " ".join(error.notes or [])
                check("errorCode=410012" in notes, f"failed job notes {notes!r}")

            # Chunked publish through fileUploads (TSC chunks every file at
            # or above TSC_FILESIZE_LIMIT_MB), as a job.
            os.environ["TSC_FILESIZE_LIMIT_MB"] = "0"
            chunked_item = TSC.DatasourceItem(project.id, name="tsc_chunked")
            publish_job = server.datasources.publish(
                chunked_item, base_path, TSC.Server.PublishMode.Overwrite, as_job=True
            )
            publish_job = server.jobs.wait_for_job(publish_job, timeout=60)
            check(publish_job.datasource_id, "the publish job names no data source")
            chunked_path = server.datasources.download(
                publish_job.datasource_id, filepath=os.path.join(work, "chunked")
            )
            rows = read_rows(hyper, extract_of(chunked_path, work))
            want = [(1, "one", Decimal("1.50")), (2, "two", Decimal("2.50")), (3, "three", Decimal("0.25"))]
            check(rows == want, f"rows after chunked publish {rows!r}, expected {want!r}")
            server.datasources.delete(publish_job.datasource_id)

            server.webhooks.test(hook.id)
            server.webhooks.delete(hook.id)
            hooks, _ = server.webhooks.get()
            check(hooks == [], f"webhooks left after delete: {hooks!r}")

            server.datasources.delete(published.id)
            try:
                server.datasources.get_by_id(published.id)
                fail("the deleted data source is still there")
            except TSC.ServerResponseError as error:
                check(error.code == "404011", f"get after delete gave {error.code}, expected 404011")

    print("tsc round trip: OK")


if __name__ == "__main__":
    main()
