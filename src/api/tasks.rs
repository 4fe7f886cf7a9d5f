//! Background tasks over HTTP: `GET /api/tasks/{taskId}` reports one task of
//! any kind (a sync job's id answers too, as kind `sync`), so that whoever
//! queued work (an analysis, an erasure) can follow it to its end.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::access::{authorize, Caller};
use super::error::{ApiError, ErrorEnvelope};
use super::views::success;
use super::AppState;
use crate::domain::FieldError;
use crate::records::audit::Action;
use crate::records::jobs::SyncJob;
use crate::records::tasks::{Task, TaskId};
use crate::sync::engine::SYNC_KIND;

/// A task as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    pub task_id: Uuid,
    /// What the task does (`sync` for a sync job).
    #[schema(example = "sync")]
    pub kind: String,
    /// Whose data it works on; null for system-wide work.
    #[schema(example = "user123")]
    pub user_id: Option<String>,
    /// queued, running, succeeded or failed
    #[schema(example = "queued")]
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The last failed run's message, if any.
    pub error: Option<String>,
}

impl From<Task> for TaskView {
    fn from(t: Task) -> Self {
        Self {
            task_id: t.id.0,
            error: t.last_error().map(str::to_owned),
            kind: t.kind,
            user_id: t.user_id.map(|u| u.to_string()),
            status: t.status.as_str(),
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
        }
    }
}

impl From<SyncJob> for TaskView {
    fn from(j: SyncJob) -> Self {
        Self {
            task_id: j.id,
            kind: SYNC_KIND.to_owned(),
            user_id: Some(j.user_id.to_string()),
            status: j.status.as_str(),
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            error: j.errors.last().cloned(),
        }
    }
}

/// One background task: its kind, status and timings.
#[utoipa::path(
    get, path = "/api/tasks/{taskId}", tag = "tasks",
    params(("taskId" = String, Path, description = "The task's UUID (a sync job's id too)")),
    responses(
        (status = 200, description = "The task", body = super::docs::TaskEnvelope),
        (status = 400, description = "Not a task id", body = ErrorEnvelope),
        (status = 401, description = "No or bad credentials", body = ErrorEnvelope),
        (status = 403, description = "The task belongs to a user the caller may not see, or is system-wide and the caller neither admin nor service", body = ErrorEnvelope),
        (status = 404, description = "No such task", body = ErrorEnvelope),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    caller: Caller,
) -> Result<axum::Json<super::views::Success<TaskView>>, ApiError> {
    let id = TaskId::parse(&raw)
        .ok_or_else(|| FieldError::new("taskId", "is not a task id (a UUID)"))?;
    let (owner, view) = match state.store.get_task(id).await? {
        Some(task) => (task.user_id.clone(), TaskView::from(task)),
        None => {
            let job = state
                .store
                .get_job(id.0)
                .await?
                .ok_or_else(|| ApiError::NotFound("task".into()))?;
            (Some(job.user_id.clone()), TaskView::from(job))
        }
    };
    match owner {
        Some(owner) => authorize(&state, &caller, Action::ReadTasks, &owner).await?,
        None => {
            let own = caller.principal.user_id.clone();
            authorize(&state, &caller, Action::ReadSystemTasks, &own).await?
        }
    };
    Ok(success(view))
}
