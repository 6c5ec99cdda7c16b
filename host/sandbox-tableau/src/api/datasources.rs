//! Projects and data sources: list, get, connections, delete, download,
//! refresh, and publish (single request or from an upload session).

use super::uploads::take_upload;
use super::*;

pub(super) fn list_projects(ctx: &Ctx) -> Result<Response, ApiError> {
    let q = ListQuery::parse(
        &ctx.query,
        &[
            "name",
            "parentProjectId",
            "topLevelProject",
            "createdAt",
            "updatedAt",
            "ownerName",
        ],
        &["name", "createdAt", "updatedAt"],
    )?;
    let shared = &ctx.shared;
    let (page, total) = q.apply(shared.projects.clone(), |p, field| match field {
        "name" => Field::Text(p.name.clone()),
        "parentProjectId" => Field::Text(p.parent_id.clone().unwrap_or_default()),
        "topLevelProject" => Field::Bool(p.parent_id.is_none()),
        "ownerName" => Field::Text(shared.user.name.clone()),
        _ => Field::Time(p.created_at),
    });
    let items = page.iter().map(|p| p.node(&shared.user.id)).collect();
    ok(
        ctx,
        StatusCode::OK,
        vec![q.pagination(total), Node::list("projects", items)],
    )
}

fn datasource_node(shared: &Shared, ds: &Datasource) -> Node {
    ds.node(
        shared.project(&ds.project_id),
        &shared.user,
        &shared.server_url,
        &shared.site,
    )
}

pub(super) fn list_datasources(ctx: &Ctx) -> Result<Response, ApiError> {
    let q = ListQuery::parse(
        &ctx.query,
        &[
            "name",
            "contentUrl",
            "projectName",
            "projectId",
            "createdAt",
            "updatedAt",
            "type",
            "isCertified",
            "ownerName",
            "hasExtracts",
        ],
        &[
            "name",
            "contentUrl",
            "projectName",
            "createdAt",
            "updatedAt",
            "size",
        ],
    )?;
    let shared = &ctx.shared;
    let all = shared.inner().datasources.clone();
    let project_name = |ds: &Datasource| {
        shared
            .project(&ds.project_id)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    };
    let (page, total) = q.apply(all, |d, field| match field {
        "name" => Field::Text(d.name.clone()),
        "contentUrl" => Field::Text(d.content_url.clone()),
        "projectName" => Field::Text(project_name(d)),
        "projectId" => Field::Text(d.project_id.clone()),
        "type" => Field::Text("dataengine".to_owned()),
        "ownerName" => Field::Text(shared.user.name.clone()),
        "isCertified" => Field::Bool(d.certified),
        "hasExtracts" => Field::Bool(true),
        "size" => Field::Number(i64::try_from(d.size).unwrap_or(i64::MAX)),
        "updatedAt" => Field::Time(d.updated_at),
        _ => Field::Time(d.created_at),
    });
    let items = page.iter().map(|d| datasource_node(shared, d)).collect();
    ok(
        ctx,
        StatusCode::OK,
        vec![q.pagination(total), Node::list("datasources", items)],
    )
}

pub(super) fn find_datasource(shared: &Shared, id: &str) -> Result<Datasource, ApiError> {
    shared
        .inner()
        .datasources
        .iter()
        .find(|d| d.id == id)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found("404011", format!("Datasource '{id}' could not be found."))
        })
}

pub(super) fn get_datasource(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    ok(ctx, StatusCode::OK, vec![datasource_node(&ctx.shared, &ds)])
}

pub(super) fn connections(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    ok(
        ctx,
        StatusCode::OK,
        vec![Node::list("connections", vec![ds.connection_node()])],
    )
}

pub(super) async fn delete_datasource(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    let guard = ds.lock.lock().await;
    ctx.shared.inner().datasources.retain(|d| d.id != ds.id);
    if let Err(e) = std::fs::remove_file(&ds.file) {
        tracing::warn!(file = %ds.file.display(), error = %e, "could not remove a deleted data source's file");
    }
    drop(guard);
    ctx.shared.save_catalog();
    webhooks::fire(&ctx.shared, "DatasourceDeleted", &ds.id, &ds.name);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn download(ctx: &Ctx, id: &str) -> Result<Response, ApiError> {
    let ds = find_datasource(&ctx.shared, id)?;
    let include_extract = ctx
        .query
        .get("includeExtract")
        .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
    let guard = ds.lock.lock().await;
    let tables = ctx
        .shared
        .engine
        .inspect(&ds.file)
        .await
        .map_err(|e| ApiError::internal(format!("cannot open the data source file: {e}")))?;
    let bytes =
        if include_extract {
            Some(tokio::fs::read(&ds.file).await.map_err(|e| {
                ApiError::internal(format!("cannot read the data source file: {e}"))
            })?)
        } else {
            None
        };
    drop(guard);
    let stem: String = ds
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_. ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let table = tables
        .iter()
        .find(|t| t.schema == "Extract" && t.name == "Extract")
        .or_else(|| tables.first());
    let (schema, table) = table
        .map(|t| (t.schema.as_str(), t.name.as_str()))
        .unwrap_or(("Extract", "Extract"));
    let extract_path = format!("Data/Extracts/{stem}.hyper");
    let tds = tdsx::tds(&ds.name, &extract_path, schema, table);
    let (body, filename) = match bytes {
        Some(bytes) => (
            tdsx::stored_zip(&[
                (&format!("{stem}.tds"), tds.as_bytes()),
                (&extract_path, &bytes),
            ])
            .map_err(|e| ApiError::internal(e.to_string()))?,
            format!("{stem}.tdsx"),
        ),
        None => (tds.into_bytes(), format!("{stem}.tds")),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

pub(super) async fn refresh(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let body = read_small(&ctx).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        parse_ts_request(&ctx.headers, &body)?;
    }
    let ds = find_datasource(&ctx.shared, id)?;
    let job = jobs::register(
        &ctx.shared,
        jobs::new_job(JobKind::Refresh, Some(&ds), &ds.name),
    );
    jobs::spawn_refresh(
        Arc::clone(&ctx.shared),
        job.id.clone(),
        ds.id.clone(),
        ds.name.clone(),
        ds.queue.enqueue(),
    );
    ok(&ctx, StatusCode::ACCEPTED, vec![job.node()])
}

pub(super) async fn publish(ctx: Ctx) -> Result<Response, ApiError> {
    let shared = Arc::clone(&ctx.shared);
    let limit = shared.settings.single_request_limit;
    let body = ctx.take_body();
    let too_large = |total: u64| {
        ApiError::too_large(format!(
            "The request of {total} bytes is larger than the {} MB allowed in one request; publish files this large with a chunked file upload (fileUploads, then uploadSessionId).",
            limit / MB
        ))
    };
    // The cap is on the file; the slack covers the XML part and framing.
    let body = read_body(body, limit.saturating_add(MULTIPART_SLACK))
        .await?
        .map_err(too_large)?;
    let overwrite = flag(&ctx, "overwrite");
    let append = flag(&ctx, "append");
    if overwrite && append {
        return Err(ApiError::bad_request(
            "The 'overwrite' and 'append' parameters cannot both be true.",
        ));
    }
    let mode = if overwrite {
        Mode::Overwrite
    } else if append {
        Mode::Append
    } else {
        Mode::CreateNew
    };
    if let Some(kind) = ctx.query.get("datasourceType")
        && !kind.eq_ignore_ascii_case("hyper")
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "400011",
            "Bad Request",
            format!(
                "datasourceType '{kind}' is not supported here: the sandbox stores data sources as .hyper files."
            ),
        ));
    }
    let parts = parse_multipart(&ctx.headers, &body)?;
    let payload = parts
        .iter()
        .find(|p| p.name == "request_payload")
        .ok_or_else(|| ApiError::bad_request("The request has no 'request_payload' part."))?;
    let root = parse_xml(&payload.data)?;
    let element = root
        .child("datasource")
        .ok_or_else(|| ApiError::bad_request("The request_payload has no datasource element."))?;
    let file_part = parts.iter().find(|p| p.name == "tableau_datasource");
    let upload_id = ctx.query.get("uploadSessionId").cloned();
    let staged = shared.upload_dir.join(format!("publish-{}.hyper", luid()));
    let filename = match (&upload_id, file_part) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Give either a 'tableau_datasource' part or an uploadSessionId, not both.",
            ));
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "The request has no 'tableau_datasource' part and no uploadSessionId.",
            ));
        }
        (None, Some(part)) => {
            if part.data.len() as u64 > limit {
                return Err(too_large(body.len() as u64));
            }
            tokio::fs::write(&staged, &part.data)
                .await
                .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
            part.filename.clone().unwrap_or_default()
        }
        (Some(id), None) => {
            let upload = take_upload(&shared, id)?;
            tokio::fs::rename(&upload.file, &staged)
                .await
                .map_err(|e| ApiError::internal(format!("cannot stage the upload: {e}")))?;
            String::new()
        }
    };
    let name = element
        .attr("name")
        .map(str::to_owned)
        .or_else(|| {
            filename
                .rsplit_once('.')
                .map(|(stem, _)| stem.to_owned())
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| {
            let _ = std::fs::remove_file(&staged);
            ApiError::bad_request("The datasource element has no name.")
        })?;
    let filename = if filename.is_empty() {
        format!("{name}.hyper")
    } else {
        filename
    };
    let project = match element.child("project").and_then(|p| p.attr("id")) {
        Some(id) => shared.project(id).cloned().ok_or_else(|| {
            let _ = std::fs::remove_file(&staged);
            ApiError::not_found("404005", format!("Project '{id}' could not be found."))
        })?,
        None => shared.default_project().clone(),
    };
    let request = Publish {
        name: name.clone(),
        project_id: project.id.clone(),
        description: element.attr("description").unwrap_or("").to_owned(),
        mode,
        file: staged.clone(),
        filename,
    };
    if mode == Mode::CreateNew
        && shared
            .inner()
            .datasources
            .iter()
            .any(|d| d.name == name && d.project_id == project.id)
    {
        let _ = std::fs::remove_file(&staged);
        return Err(jobs::name_conflict(&name, &project.name));
    }
    if flag(&ctx, "asJob") {
        let job = jobs::register(&shared, jobs::new_job(JobKind::Publish, None, &name));
        jobs::spawn_publish(Arc::clone(&shared), job.id.clone(), request);
        return ok(&ctx, StatusCode::ACCEPTED, vec![job.node()]);
    }
    let ds = jobs::publish_now(&shared, request).await?;
    ok(
        &ctx,
        StatusCode::CREATED,
        vec![datasource_node(&shared, &ds)],
    )
}
