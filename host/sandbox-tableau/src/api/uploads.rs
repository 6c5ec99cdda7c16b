//! Chunked file uploads and Update Data in Hyper Data Source.

use super::datasources::find_datasource;
use super::*;

/// Takes an upload session's file for a publish or an update.
pub(super) fn take_upload(shared: &Shared, id: &str) -> Result<Upload, ApiError> {
    shared
        .inner()
        .uploads
        .remove(id)
        .ok_or_else(|| unknown_upload(id))
}

pub(super) fn unknown_upload(id: &str) -> ApiError {
    ApiError::not_found(
        "404015",
        format!("Upload session '{id}' could not be found."),
    )
}

pub(super) fn initiate_upload(ctx: &Ctx) -> Result<Response, ApiError> {
    let shared = &ctx.shared;
    let mut inner = shared.inner();
    inner.upload_counter += 1;
    let id = format!(
        "{}:{}-1:0",
        7700 + inner.upload_counter,
        uuid::Uuid::new_v4().simple()
    );
    let file = shared
        .upload_dir
        .join(format!("upload-{}.part", uuid::Uuid::new_v4().simple()));
    std::fs::File::create(&file)
        .map_err(|e| ApiError::internal(format!("cannot create the upload file: {e}")))?;
    let upload = Upload {
        id: id.clone(),
        file,
        bytes: 0,
    };
    let node = upload.node();
    inner.uploads.insert(id, upload);
    drop(inner);
    ok(ctx, StatusCode::CREATED, vec![node])
}

pub(super) async fn append_upload(ctx: Ctx, id: &str) -> Result<Response, ApiError> {
    let shared = Arc::clone(&ctx.shared);
    let upload = shared
        .inner()
        .uploads
        .get(id)
        .cloned()
        .ok_or_else(|| unknown_upload(id))?;
    let limit = shared.settings.single_request_limit;
    let body = ctx.take_body();
    let too_large = |total: u64| {
        ApiError::too_large(format!(
            "The chunk request of {total} bytes is larger than the {} MB allowed in one request.",
            limit / MB
        ))
    };
    let body = read_body(body, limit.saturating_add(MULTIPART_SLACK))
        .await?
        .map_err(too_large)?;
    if let Some(status) = shared.faults.take_chunk_failure() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(ApiError::new(
            status,
            &format!("{}000", status.as_u16()),
            status.canonical_reason().unwrap_or("Error"),
            "The chunk could not be stored (injected fault); it was not appended.",
        ));
    }
    let parts = parse_multipart(&ctx.headers, &body)?;
    let file_part = parts
        .iter()
        .find(|p| p.name == "tableau_file")
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "400020",
                "Bad Request",
                "The request has no 'tableau_file' part.",
            )
        })?;
    if file_part.data.len() as u64 > limit {
        return Err(too_large(body.len() as u64));
    }
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&upload.file)
            .map_err(|e| ApiError::internal(format!("cannot open the upload file: {e}")))?;
        file.write_all(&file_part.data)
            .map_err(|e| ApiError::internal(format!("cannot append the chunk: {e}")))?;
    }
    let node = {
        let mut inner = shared.inner();
        let upload = inner
            .uploads
            .get_mut(id)
            .ok_or_else(|| unknown_upload(id))?;
        upload.bytes += file_part.data.len() as u64;
        upload.node()
    };
    ok(&ctx, StatusCode::OK, vec![node])
}

pub(super) async fn update_data(
    ctx: Ctx,
    id: &str,
    connection: Option<&str>,
) -> Result<Response, ApiError> {
    let shared = Arc::clone(&ctx.shared);
    let ds = find_datasource(&shared, id)?;
    if let Some(connection) = connection
        && connection != ds.connection_id
    {
        return Err(ApiError::not_found(
            "404020",
            format!("Connection '{connection}' of datasource '{id}' could not be found."),
        ));
    }
    let request_id = ctx
        .headers
        .get("requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty());
    if let Some(rid) = &request_id {
        let mut inner = shared.inner();
        inner
            .request_ids
            .retain(|_, (_, seen)| seen.elapsed() < REQUEST_ID_WINDOW);
        if let Some((job_id, _)) = inner.request_ids.get(rid)
            && let Some(job) = inner.jobs.get(job_id)
        {
            tracing::info!(request_id = %rid, job = %job_id, "duplicate RequestID: returning the original job");
            let node = job.node();
            drop(inner);
            return ok(&ctx, StatusCode::ACCEPTED, vec![node]);
        }
    }
    let body = read_small(&ctx).await?;
    let list = actions::parse_body(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid update actions: {e}")))?;
    let upload_id = ctx.query.get("uploadSessionId").cloned();
    if let Some(upload_id) = &upload_id {
        let upload = shared
            .inner()
            .uploads
            .get(upload_id)
            .cloned()
            .ok_or_else(|| unknown_upload(upload_id))?;
        if upload.bytes > shared.settings.update_payload_limit {
            return Err(ApiError::too_large(format!(
                "The payload of {} bytes exceeds the update limit of {} MB.",
                upload.bytes,
                shared.settings.update_payload_limit / MB
            )));
        }
    }
    // Check the RequestID again, take the payload and register the job under
    // one lock, so two concurrent requests with one RequestID apply once.
    let (job, payload, turn) = {
        let mut inner = shared.inner();
        if let Some(rid) = &request_id
            && let Some((job_id, _)) = inner.request_ids.get(rid)
            && let Some(job) = inner.jobs.get(job_id)
        {
            let node = job.node();
            drop(inner);
            return ok(&ctx, StatusCode::ACCEPTED, vec![node]);
        }
        let payload = match &upload_id {
            Some(upload_id) => Some(
                inner
                    .uploads
                    .remove(upload_id)
                    .ok_or_else(|| unknown_upload(upload_id))?
                    .file,
            ),
            None => None,
        };
        let job = jobs::new_job(JobKind::Update, Some(&ds), &ds.name);
        if let Some(rid) = &request_id {
            inner
                .request_ids
                .insert(rid.clone(), (job.id.clone(), Instant::now()));
        }
        jobs::insert(&mut inner.jobs, job.clone());
        (job, payload, ds.queue.enqueue())
    };
    tracing::info!(datasource = %ds.name, job = %job.id, request_id = ?request_id, actions = list.len(), "update job queued");
    jobs::spawn_update(
        Arc::clone(&shared),
        job.id.clone(),
        ds.id.clone(),
        payload,
        list,
        turn,
    );
    ok(&ctx, StatusCode::ACCEPTED, vec![job.node()])
}
