//! The OpenAPI document (`/openapi.json`) and the Swagger UI explorer (`/docs`),
//! whose assets are compiled into the binary so it works offline.

use axum::Router;
use utoipa::{OpenApi, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

use super::error::{ErrorBody, ErrorEnvelope};
use super::readings::{
    BulkInput, BulkResult, OrderName, Pagination, ReadingsPage, RecordOutcome, Summary,
};
use super::views::{DeviceInfoView, ReadingView};
use super::{health, readings, AppState};
use crate::pipeline::wire::{DeviceInfoInput, ReadingInput};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cgm-hub",
        description = "Collects, validates, stores and serves continuous glucose monitor readings. \
            Success responses are `{\"status\":\"success\",\"data\":...}`; errors are \
            `{\"status\":\"error\",\"error\":{\"code\",\"message\",\"details\"}}`. \
            Every response carries `X-Request-Id`."
    ),
    paths(health::health, health::metrics, readings::latest, readings::range, readings::write),
    components(schemas(
        ReadingView, DeviceInfoView, ReadingInput, BulkInput, DeviceInfoInput, RecordOutcome, Summary,
        BulkResult, Pagination, ErrorEnvelope, ErrorBody, ReadingsPage, LatestEnvelope,
        PageEnvelope, WriteEnvelope, WriteData, OrderName
    )),
    tags(
        (name = "readings", description = "Glucose readings"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// `{"status":"success","data":<reading>}` (documentation of the envelope).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LatestEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ReadingView<'static>,
}

/// `{"status":"success","data":{"readings":[...],"pagination":{...}}}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PageEnvelope {
    #[schema(example = "success")]
    status: String,
    data: ReadingsPage<'static>,
}

/// `{"status":"success","data":<RecordOutcome or BulkResult>}`
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WriteEnvelope {
    #[schema(example = "success")]
    status: String,
    data: WriteData,
}

#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum WriteData {
    Single(RecordOutcome),
    Bulk(BulkResult),
}

pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
