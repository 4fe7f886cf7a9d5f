//! `/sim/*`: the simulator's own control routes, so a standalone simulator
//! (`cgm-hub simulate dexcom`) can be steered like the in-process handle.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::users::valid_name;
use super::{DexcomSimulator, Faults, SimStats};

/// `GET /sim/faults`
pub(super) async fn get_faults(State(sim): State<DexcomSimulator>) -> Json<Faults> {
    Json(sim.faults())
}

/// `PUT /sim/faults` with a JSON `Faults` (missing fields take defaults);
/// answers with the faults now in force.
pub(super) async fn put_faults(
    State(sim): State<DexcomSimulator>,
    Json(faults): Json<Faults>,
) -> Json<Faults> {
    sim.set_faults(faults);
    Json(sim.faults())
}

/// `POST /sim/users/{sim_user}/revoke`: 204, or 400 for an invalid name.
pub(super) async fn revoke(
    State(sim): State<DexcomSimulator>,
    Path(sim_user): Path<String>,
) -> Response {
    if !valid_name(&sim_user) {
        return (StatusCode::BAD_REQUEST, "invalid sim_user").into_response();
    }
    sim.revoke_user(&sim_user);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /sim/access-tokens/expire`: every issued access token expires now.
pub(super) async fn expire_access_tokens(State(sim): State<DexcomSimulator>) -> StatusCode {
    sim.expire_access_tokens();
    StatusCode::NO_CONTENT
}

/// `GET /sim/stats`
pub(super) async fn stats(State(sim): State<DexcomSimulator>) -> Json<SimStats> {
    Json(sim.stats())
}
