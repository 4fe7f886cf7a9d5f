//! The user's part of the OAuth flow, done by a program: at the simulator's
//! login page, consent as a simulated user and learn where the browser is sent
//! back to. Used by `serve --demo`, the tests and the benchmark.

use url::Url;

/// Opens `login` (a Dexcom login URL built by cgm-hub) as `sim_user`, consents,
/// and returns the redirect target: the app's callback with `code` and `state`.
pub async fn consent(login: &Url, sim_user: &str) -> Result<Url, String> {
    let mut login = login.clone();
    login.query_pairs_mut().append_pair("sim_user", sim_user);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let response = browser.get(login).send().await.map_err(|e| e.to_string())?;
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| Url::parse(l).ok())
        .ok_or_else(|| format!("the simulator's login answered {}", response.status()))
}
