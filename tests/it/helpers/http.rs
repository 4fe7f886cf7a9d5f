//! Client-side HTTP checks: the error envelope, JSON and metrics scrapes, paging
//! through a listing.

use serde_json::Value;

/// Asserts the error envelope and returns its `error` object.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert!(
        response.headers().contains_key("x-request-id"),
        "x-request-id on errors"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["details"].is_object(),
        "details is always an object: {body}"
    );
    body["error"].clone()
}

/// GET an absolute URL and parse the JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("request");
    response.json().await.expect("JSON body")
}

/// `GET {base}/metrics`: the Prometheus text.
pub async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("request /metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("metrics text")
}

/// The value of one series (name and labels, exactly as exported) in a scrape.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse().ok())
    })
}

/// Every reading of a listing, following `pagination.next` links from `first_url`.
pub async fn all_readings(client: &reqwest::Client, first_url: &str) -> Vec<Value> {
    let mut readings = Vec::new();
    let mut next = Some(first_url.to_owned());
    while let Some(url) = next {
        let response = client.get(&url).send().await.expect("request");
        assert_eq!(response.status(), 200, "{url}");
        let page: Value = response.json().await.expect("JSON page");
        readings.extend(
            page["data"]["readings"]
                .as_array()
                .expect("readings")
                .iter()
                .cloned(),
        );
        next = page["data"]["pagination"]["next"]
            .as_str()
            .map(str::to_owned);
    }
    readings
}

pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}
