//! The operator and developer kit held to the code: the configuration reference, the
//! OpenAPI document against the router, the error-code reference, the deployment files,
//! the alert rules and dashboard against a running instance's /metrics, and the example
//! client, the webhook signers and the operator CLI against a live instance.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use serde_json::{json, Value};
use yaml_rust2::{Yaml, YamlLoader};

use cgm_hub::api::{gate_errors, openapi_path, route_table, ApiDoc, ApiError, Gate};
use cgm_hub::config::{env_example, markdown_reference, VARIABLES};
use cgm_hub::sources::webhook::signature::sign;
use utoipa::OpenApi;

use crate::helpers::{eventually_ok, run_cgm_hub, scrape, wait_for, Binary};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(path: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn setting_names() -> BTreeSet<&'static str> {
    VARIABLES.iter().map(|v| v.name).collect()
}

// --- Configuration, OpenAPI and error codes: documents against the code ---

#[test]
fn configuration_reference_and_env_example_are_generated_from_the_settings() {
    assert!(
        read("docs/configuration.md") == markdown_reference(),
        "docs/configuration.md differs from the settings in src/config/variables.rs: \
         run `cargo run -- config reference > docs/configuration.md`"
    );
    assert!(
        read(".env.example") == env_example(),
        ".env.example differs from the settings: run `cargo run -- config reference --env > .env.example`"
    );
}

#[test]
fn every_route_is_in_the_openapi_document_with_its_error_responses() {
    let doc = serde_json::to_value(ApiDoc::openapi()).expect("document serializes");
    let routes = route_table();
    let routed: BTreeSet<(String, String)> = routes
        .iter()
        .map(|r| (r.method.as_str().to_owned(), openapi_path(r.path)))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert_eq!(
        routed, documented,
        "the router's routes and the document's operations"
    );
    assert_eq!(routed.len(), routes.len(), "no route is listed twice");

    for route in &routes {
        let path = openapi_path(route.path);
        let op = &doc["paths"][&path][route.method.as_str().to_lowercase()];
        let what = format!("{} {path}", route.method);
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{what} documents no success"
        );
        for (status, _) in gate_errors(route, !op["requestBody"].is_null()) {
            assert!(
                responses.contains_key(&status.to_string()),
                "{what} lacks its {status} response"
            );
        }
        if route.gate != Gate::Open {
            for (status, response) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorEnvelope",
                    "{what} {status} is not the error envelope"
                );
            }
        }
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(in_path, declared, "{what}: path parameters");
    }
}

#[test]
fn error_code_reference_lists_exactly_the_codes_and_statuses_of_the_api() {
    let doc = read("docs/error-codes.md");
    let rows: Vec<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter(|l| {
            l[3..]
                .split('`')
                .next()
                .is_some_and(|c| c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        })
        .collect();
    let documented: BTreeSet<&str> = rows
        .iter()
        .filter_map(|l| l[3..].split('`').next())
        .collect();
    let errors = ApiError::one_of_each();
    let codes: BTreeSet<&str> = errors.iter().map(ApiError::code).collect();
    assert_eq!(documented, codes, "docs/error-codes.md against ApiError");
    for e in &errors {
        let row = rows
            .iter()
            .find(|l| l.starts_with(&format!("| `{}`", e.code())))
            .expect("row");
        assert!(
            row.contains(&e.status().as_u16().to_string()),
            "the row of {} does not give its status {}",
            e.code(),
            e.status()
        );
    }
}

// --- Deployment files ---

/// The keys of a compose `environment:` (a mapping, or a list of `KEY=value`).
fn compose_env_keys(environment: &Yaml) -> Vec<String> {
    match environment {
        Yaml::Hash(map) => map
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect(),
        Yaml::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str()?.split('=').next().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn array(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map_or(&[], Vec::as_slice)
}

#[test]
fn compose_file_parses_and_sets_only_real_settings() {
    let raw = read("docker-compose.yml");
    let compose = &yaml("docker-compose.yml")[0];
    let names = setting_names();
    let services = compose["services"].as_hash().expect("services");
    let mut ours = 0;
    for (name, service) in services {
        let name = name.as_str().expect("service name");
        let is_ours = !service["build"].is_badvalue()
            || service["image"]
                .as_str()
                .is_some_and(|i| i.contains("cgm-hub"));
        if !is_ours {
            continue;
        }
        ours += 1;
        for key in compose_env_keys(&service["environment"]) {
            assert!(
                names.contains(key.as_str()),
                "service {name} sets {key}, not a cgm-hub setting"
            );
        }
        // No `healthcheck:` of its own: the image's HEALTHCHECK applies.
        if !service["healthcheck"].is_badvalue() {
            let test = format!("{:?}", service["healthcheck"]["test"]);
            assert!(
                test.contains("healthcheck"),
                "service {name} health check: {test}"
            );
        }
    }
    assert!(ours >= 1, "no cgm-hub service in docker-compose.yml");
    // Every interpolated variable is explained in the file's header comment.
    let header: String = raw
        .lines()
        .take_while(|l| l.starts_with('#') || l.is_empty())
        .collect();
    for (at, _) in raw.match_indices("${") {
        let var: String = raw[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            header.contains(&var),
            "${{{var}}} is used but not explained at the top"
        );
    }
}

#[test]
fn kubernetes_manifests_parse_and_reference_what_exists() {
    let names = setting_names();
    let dir = repo("deploy/k8s");
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/k8s") {
        let path = entry.expect("entry").path();
        let file = format!("deploy/k8s/{}", path.file_name().unwrap().to_string_lossy());
        for doc in yaml(&file) {
            if doc.is_null() {
                continue;
            }
            assert!(
                doc["kind"].as_str().is_some(),
                "{file}: a document without kind"
            );
            objects.push((file.clone(), doc));
        }
    }
    let find = |kind: &str| -> Vec<&Yaml> {
        objects
            .iter()
            .filter(|(_, d)| d["kind"].as_str() == Some(kind))
            .map(|(_, d)| d)
            .collect()
    };
    let kustomization = find("Kustomization");
    for resource in array(&kustomization[0]["resources"]) {
        let file = resource.as_str().expect("resource");
        assert!(
            dir.join(file).exists(),
            "kustomization lists missing {file}"
        );
    }
    let config_map = find("ConfigMap")[0];
    for key in config_map["data"].as_hash().expect("data").keys() {
        let key = key.as_str().expect("key");
        assert!(
            names.contains(key),
            "ConfigMap sets {key}, not a cgm-hub setting"
        );
    }
    let secret = find("Secret")[0];
    let secret_name = secret["metadata"]["name"].as_str().expect("secret name");
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_hash()
        .or(secret["data"].as_hash())
        .expect("secret data")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();

    let deployment = find("Deployment")[0];
    let pod = &deployment["spec"]["template"];
    let pod_labels = pod["metadata"]["labels"].as_hash().expect("pod labels");
    let container = &array(&pod["spec"]["containers"])[0];
    for from in array(&container["envFrom"]) {
        if let Some(name) = from["configMapRef"]["name"].as_str() {
            assert_eq!(
                Some(name),
                config_map["metadata"]["name"].as_str(),
                "envFrom"
            );
        }
    }
    for env in array(&container["env"]) {
        let name = env["name"].as_str().expect("env name");
        assert!(
            names.contains(name),
            "Deployment sets {name}, not a cgm-hub setting"
        );
        let secret_ref = &env["valueFrom"]["secretKeyRef"];
        if !secret_ref.is_badvalue() {
            assert_eq!(secret_ref["name"].as_str(), Some(secret_name), "{name}");
            let key = secret_ref["key"].as_str().expect("key");
            assert!(
                secret_keys.contains(key) || secret_ref["optional"].as_bool() == Some(true),
                "{name} needs key {key}, which the example Secret lacks and is not optional"
            );
        }
    }
    let ports: Vec<i64> = array(&container["ports"])
        .iter()
        .filter_map(|p| p["containerPort"].as_i64())
        .collect();
    assert!(ports.contains(&5001), "the container exposes 5001");
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/health"), "{probe}");
        let port = &get["port"];
        assert!(
            port.as_i64() == Some(5001) || port.as_str() == Some("http"),
            "{probe} port {port:?}"
        );
    }
    // The Service and the PodDisruptionBudget select the Deployment's pods.
    for (kind, selector) in [
        ("Service", &find("Service")[0]["spec"]["selector"]),
        (
            "PodDisruptionBudget",
            &find("PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"],
        ),
    ] {
        for (k, v) in selector.as_hash().expect("selector") {
            assert_eq!(pod_labels.get(k), Some(v), "{kind} selects {k:?}={v:?}");
        }
    }
}

#[test]
fn dockerfile_runs_as_a_user_with_a_real_health_check() {
    let dockerfile = read("Dockerfile");
    let names = setting_names();
    let dockerfile = dockerfile.replace("\\\n", " "); // continuation lines
    let runtime = &dockerfile[dockerfile.rfind("\nFROM ").expect("a runtime stage")..];
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(!["root", "0", "0:0"].contains(&user.trim()), "runs as root");
    assert!(runtime.contains("HEALTHCHECK"), "no HEALTHCHECK");
    assert!(
        runtime.contains(r#""healthcheck""#),
        "the health check is `cgm-hub healthcheck`"
    );
    for line in runtime.lines().filter_map(|l| l.strip_prefix("ENV ")) {
        for pair in line.split_whitespace() {
            let name = pair.split('=').next().unwrap_or_default();
            assert!(names.contains(name), "ENV {name} is not a cgm-hub setting");
        }
    }
}

// --- Alert rules and the dashboard against a running instance ---

/// Metric names in a PromQL expression: identifiers that are not functions,
/// aggregations, keywords, label names (inside `{}` or a `by`/`without` list),
/// label values (strings) or durations (inside `[]`).
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    #[rustfmt::skip]
    const KEYWORDS: &[&str] = &[
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
        "bool", "offset", "inf", "nan", "Inf", "NaN",
        // Aggregations may be followed by `by (...)` before their parenthesis.
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    ];
    let mut out = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let skip_until = |i: &mut usize, close: char| {
        while *i < chars.len() && chars[*i] != close {
            if chars[*i] == '"' {
                *i += 1;
                while *i < chars.len() && chars[*i] != '"' {
                    *i += if chars[*i] == '\\' { 2 } else { 1 };
                }
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            skip_until(&mut i, '}');
        } else if c == '[' {
            skip_until(&mut i, ']');
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
                && chars.get(next) == Some(&'(')
            {
                i = next;
                skip_until(&mut i, ')');
            } else if chars.get(next) != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                out.insert(word);
            }
            continue;
        }
        i += 1;
    }
    out
}

#[test]
fn the_promql_scanner_finds_metrics_and_only_metrics() {
    let found = promql_metrics(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{route!~"/metrics|x"}[5m]))) > 1e3
           or absent(up{job=~"cgm-hub.*"}) and on (instance) sync_backlog_oldest_seconds offset 5m"#,
    );
    let want: BTreeSet<String> = [
        "http_request_duration_seconds_bucket",
        "up",
        "sync_backlog_oldest_seconds",
    ]
    .map(String::from)
    .into();
    assert_eq!(found, want);
}

/// Every PromQL expression of the alert rules and the Grafana dashboard.
fn monitoring_expressions() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for group in array(&yaml("deploy/prometheus/alerts.yml")[0]["groups"]) {
        for rule in array(&group["rules"]) {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .expect("rule name");
            exprs.push((
                format!("alert {name}"),
                rule["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/cgm-hub.json")).expect("JSON");
    fn panels<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        for p in v["panels"].as_array().into_iter().flatten() {
            out.push(p);
            panels(p, out);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard, &mut all);
    for panel in all {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("?");
                exprs.push((format!("panel {title:?}"), expr.to_owned()));
            }
        }
    }
    exprs
}

const WEBHOOK_SECRET: &str = "kit-webhook-secret";

/// A signed `egvs` delivery of `values` at 5-minute steps ending 10 minutes ago.
fn egvs_payload(values: &[u16]) -> Vec<u8> {
    let end = Utc::now() - Span::minutes(10);
    let records: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let at = end - Span::minutes(5 * (values.len() - 1 - i) as i64);
            json!({"recordId": format!("kit-{i}-{}", at.timestamp()),
                   "systemTime": at.format("%Y-%m-%dT%H:%M:%S").to_string(),
                   "displayTime": at.format("%Y-%m-%dT%H:%M:%S").to_string(),
                   "value": v, "trend": "flat", "trendRate": 0.1, "unit": "mg/dL",
                   "rateUnit": "mg/dL/min", "status": null})
        })
        .collect();
    serde_json::to_vec(&json!({"type": "egvs", "records": records})).expect("JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_in_the_alert_rules_and_dashboard_is_exported_by_a_running_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut server = Binary::start_with(
        &dir.path().join("kit.db"),
        &["--demo"],
        &[("WEBHOOK_SIGNING_SECRET", WEBHOOK_SECRET)],
    );
    server.wait_healthy(&client).await;
    // What the demo alone does not do: one rejected reading and one webhook.
    let rejected = client
        .post(format!("{}/api/bg/kit-user/readings", server.base))
        .json(&json!({"timestamp": Utc::now().to_rfc3339(), "glucose_value": 5000}))
        .send()
        .await
        .expect("post");
    assert_eq!(rejected.status(), 422);
    let body = egvs_payload(&[120, 125]);
    let at = Utc::now().timestamp();
    let delivered = client
        .post(format!("{}/api/bg/kit-user/webhook", server.base))
        .header("content-type", "application/json")
        .header("x-webhook-timestamp", at.to_string())
        .header(
            "x-webhook-signature",
            sign(WEBHOOK_SECRET.as_bytes(), at, &body),
        )
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(delivered.status(), 202);

    let exprs = monitoring_expressions();
    assert!(
        exprs.len() >= 10,
        "alert rules and panels found: {}",
        exprs.len()
    );
    let mut wanted = BTreeSet::new();
    for (source, expr) in &exprs {
        let names = promql_metrics(expr);
        assert!(!names.is_empty(), "{source}: no metric in {expr:?}");
        wanted.extend(names.into_iter().filter(|n| n != "up"));
    }
    // The demo backfills and publishes within seconds; give it up to two minutes under load.
    eventually_ok(
        "every metric named by rules or panels is exported",
        Duration::from_secs(120),
        || {
            let (client, base, wanted) = (&client, &server.base, &wanted);
            async move {
                let text = scrape(client, base).await;
                let exported: BTreeSet<&str> = text
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|l| l.split(['{', ' ']).next())
                    .collect();
                let missing: Vec<&String> = wanted
                    .iter()
                    .filter(|m| !exported.contains(m.as_str()))
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not exported: {missing:?}"))
                }
            }
        },
    )
    .await;
    server.terminate().await;
}

// --- The examples and the CLI against a live instance ---

fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(envs.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `cgm-hub ARGS` with the settings of a test server on `db` (and `envs`).
fn cli(db: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let db_path = db.to_str().expect("a UTF-8 path");
    let envs: Vec<(&str, &str)> = [("SQLITE_PATH", db_path)]
        .into_iter()
        .chain(envs.iter().copied())
        .collect();
    run_cgm_hub(db.parent().expect("db folder"), args, &envs)
}

/// Waits until `GET path` with `token` answers 200; its JSON body.
async fn until_ok(client: &reqwest::Client, url: &str, token: Option<&str>) -> Value {
    eventually_ok(
        &format!("{url} answers 200"),
        Duration::from_secs(60),
        || async {
            let mut request = client.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(r) if r.status() == 200 => Ok(r.json().await.expect("JSON")),
                Ok(r) => Err(format!("status {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_client_reads_latest_and_pages_through_a_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("client.db");
    let secret = [("AUTH_JWT_SECRET", "kit-client-secret-kit-client-secret")];
    let client = reqwest::Client::new();
    let mut server = Binary::start_with(&db, &["--demo"], &[secret[0], ("AUTH_DISABLED", "false")]);
    server.wait_healthy(&client).await;
    let minted = cli(
        &db,
        &["token", "mint", "--sub", "demo-alice", "--roles", "patient"],
        &secret,
    );
    assert!(minted.status.success(), "{}", stderr(&minted));
    let token = stdout(&minted).trim().to_owned();
    let latest_url = format!("{}/api/bg/demo-alice/latest", server.base);
    let before = until_ok(&client, &latest_url, Some(&token)).await;

    // Yesterday is complete in the demo's 14-day backfill: nothing arrives for it meanwhile.
    let day = (Utc::now() - Span::days(1)).date_naive();
    let next = day.succ_opt().expect("next day");
    let page = until_ok(
        &client,
        &format!(
            "{}/api/bg/demo-alice?startDate={day}&endDate={next}&limit=1000",
            server.base
        ),
        Some(&token),
    )
    .await;
    let readings = page["data"]["readings"]
        .as_array()
        .expect("readings")
        .clone();
    // Up to 288 (sensor warm-ups and signal gaps leave holes): several pages of 50.
    assert!(readings.len() > 100, "a demo day: {}", readings.len());
    let in_range: Vec<u64> = readings
        .iter()
        .filter(|r| r["status"].is_null() || r["status"] == "ok")
        .filter_map(|r| r["glucose_value"].as_u64())
        .collect();

    let base = server.base.clone();
    let day_arg = day.to_string();
    let args = [
        "examples/client.py",
        "--base-url",
        &base,
        "--user",
        "demo-alice",
        "--token",
        &token,
        "--day",
        &day_arg,
        "--page-size",
        "50",
        "--json",
    ];
    let output = run("python3", &args, &[]);
    assert!(
        output.status.success(),
        "client failed: {}",
        stderr(&output)
    );
    let summary: Value = serde_json::from_str(&stdout(&output)).expect("client prints JSON");
    assert_eq!(summary["count"], readings.len());
    assert_eq!(summary["pages"], readings.len().div_ceil(50));
    assert_eq!(summary["min"], *in_range.iter().min().expect("values"));
    assert_eq!(summary["max"], *in_range.iter().max().expect("values"));
    let after = until_ok(&client, &latest_url, Some(&token)).await;
    let latest = &summary["latest"]["timestamp"];
    assert!(
        *latest == before["data"]["timestamp"] || *latest == after["data"]["timestamp"],
        "latest {latest} is the server's"
    );

    // Without a token: the error envelope's code on stderr, exit 1.
    let output = run(
        "python3",
        &args.map(|a| if a == token { "" } else { a }),
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("AUTH_ERROR"),
        "{}",
        stderr(&output)
    );
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_signing_examples_deliver_in_python_and_in_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let mut server = Binary::start_with(
        &dir.path().join("hooks.db"),
        &[],
        &[("WEBHOOK_SIGNING_SECRET", WEBHOOK_SECRET)],
    );
    server.wait_healthy(&client).await;
    let base = server.base.clone();
    for (program, script, user) in [
        ("python3", "examples/webhook_sign.py", "hook-python"),
        ("node", "examples/webhook_sign.mjs", "hook-node"),
    ] {
        // One body per sender: a signature names no user, so the inbox takes the same
        // signed body (and timestamp) twice as one delivery, whatever the path says.
        let payload = dir.path().join(format!("{user}.json"));
        let mut body: Value =
            serde_json::from_slice(&egvs_payload(&[101, 102, 103])).expect("JSON");
        body["records"][0]["recordId"] = json!(user);
        std::fs::write(&payload, serde_json::to_vec(&body).expect("JSON")).expect("payload");
        let file = payload.to_str().expect("path");
        let args = |secret| {
            vec![
                script, "--url", &base, "--user", user, "--secret", secret, "--file", file,
            ]
        };
        let refused = run(program, &args("not-the-secret"), &[]);
        assert_eq!(
            refused.status.code(),
            Some(1),
            "{script} with a wrong secret"
        );
        let sent = run(program, &args(WEBHOOK_SECRET), &[]);
        assert!(
            sent.status.success(),
            "{script}: {} {}",
            stdout(&sent),
            stderr(&sent)
        );
        assert!(stdout(&sent).contains("202"), "{script}: {}", stdout(&sent));
        // Processed right after the 202: the three readings become readable.
        let url = format!("{base}/api/bg/{user}?limit=10");
        let page = wait_for(&client, &url, Duration::from_secs(30), |b| {
            b["data"]["readings"]
                .as_array()
                .is_some_and(|r| r.len() == 3)
        })
        .await;
        let values: Vec<u64> = page["data"]["readings"]
            .as_array()
            .expect("readings")
            .iter()
            .filter_map(|r| r["glucose_value"].as_u64())
            .collect();
        assert_eq!(values, [101, 102, 103], "{script}: stored readings");
    }
    server.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_cli_works_beside_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ops.db");
    let client = reqwest::Client::new();
    let mut server = Binary::start_with(&db, &["--demo"], &[]);
    server.wait_healthy(&client).await;
    let json = |output: &Output| -> Value {
        assert!(output.status.success(), "{}", stderr(output));
        serde_json::from_str(&stdout(output)).expect("JSON output")
    };

    // The demo connects its three patients within seconds.
    let users = eventually_ok(
        "the demo's three patients are connected with readings",
        Duration::from_secs(120),
        || {
            let users = json(&cli(&db, &["users", "list", "--json"], &[]));
            let connected = users.as_array().expect("array").iter().filter(|u| {
                u["connections"]["dexcom"] == "connected" && !u["newest_reading_at"].is_null()
            });
            let done = connected.count() == 3;
            std::future::ready(if done {
                Ok(users)
            } else {
                Err(users.to_string())
            })
        },
    )
    .await;
    let ids: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert_eq!(ids, ["demo-alice", "demo-bob", "demo-carol"], "{users}");
    let table = cli(&db, &["users", "list"], &[]);
    assert!(stdout(&table).starts_with("USER"), "{}", stdout(&table));

    let connected = json(&cli(
        &db,
        &["connections", "list", "--status", "connected", "--json"],
        &[],
    ));
    assert_eq!(connected.as_array().expect("array").len(), 3);
    let mine = json(&cli(
        &db,
        &["connections", "list", "--user", "demo-bob", "--json"],
        &[],
    ));
    assert_eq!(mine[0]["user_id"], "demo-bob");
    assert_eq!(
        cli(&db, &["connections", "list", "--status", "bogus"], &[])
            .status
            .code(),
        Some(2)
    );

    // A manual sync queued by the CLI is run by the server's workers.
    let job = json(&cli(
        &db,
        &["sync", "--user", "demo-bob", "--wait", "60s", "--json"],
        &[],
    ));
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["trigger"], "manual");
    let id = job["job_id"].as_str().expect("job id");
    let shown = json(&cli(&db, &["jobs", "show", id, "--json"], &[]));
    assert_eq!(shown["job_id"], id);
    assert_eq!(shown["status"], "succeeded");
    let listed = json(&cli(
        &db,
        &["jobs", "list", "--user", "demo-bob", "--json"],
        &[],
    ));
    assert!(listed
        .as_array()
        .expect("array")
        .iter()
        .any(|j| j["job_id"] == id));
    let over_http = until_ok(&client, &format!("{}/api/jobs/{id}", server.base), None).await;
    assert_eq!(over_http["data"]["status"], "succeeded");

    let nobody = cli(&db, &["sync", "--user", "nobody"], &[]);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(
        stderr(&nobody).contains("no working Dexcom connection"),
        "{}",
        stderr(&nobody)
    );
    let backwards = cli(
        &db,
        &[
            "sync",
            "--user",
            "demo-bob",
            "--start-date",
            "2030-01-01",
            "--end-date",
            "2029-01-01",
        ],
        &[],
    );
    assert_eq!(backwards.status.code(), Some(2), "{}", stderr(&backwards));
    assert_eq!(
        cli(&db, &["jobs", "show", "not-a-uuid"], &[]).status.code(),
        Some(2)
    );

    // config check: valid, reachable, and secrets stay secret.
    let check = cli(
        &db,
        &["config", "check"],
        &[("AUTH_JWT_SECRET", "kit-very-secret-value")],
    );
    assert!(check.status.success(), "{}", stderr(&check));
    let text = stdout(&check);
    assert!(text.contains("storage: sqlite reachable"), "{text}");
    assert!(
        !text.contains("kit-very-secret-value") && text.contains("[redacted]"),
        "{text}"
    );
    let bad = cli(&db, &["config", "check"], &[("STORAGE_BACKEND", "mongodb")]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("STORAGE_BACKEND"), "{}", stderr(&bad));

    let health_url = format!("{}/health", server.base);
    assert!(cli(&db, &["healthcheck", "--url", &health_url], &[])
        .status
        .success());
    // With SQLite, migrating is for a stopped service.
    let refused = cli(&db, &["migrate"], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("in use by another cgm-hub process"),
        "{}",
        stderr(&refused)
    );

    assert!(server.terminate().await.success());
    let down = cli(&db, &["healthcheck", "--url", &health_url], &[]);
    assert_eq!(down.status.code(), Some(1), "nothing listens any more");
    let migrated = cli(&db, &["migrate"], &[]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(stdout(&migrated).contains("schema is up to date"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_cli_migrates_and_lists_on_postgres() {
    use cgm_hub::records::connections::{Connection, Provider};
    use cgm_hub::store::ConnectionStore;
    let schema = crate::helpers::PgSchema::new();
    let mut conn = schema.connection().await;
    let create = format!("CREATE SCHEMA \"{}\"", schema.name);
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut conn)
        .await
        .expect("create schema");
    let url = format!("{}?options=-c%20search_path%3D{}", schema.url, schema.name);
    let envs = [
        ("STORAGE_BACKEND", "postgres"),
        ("DATABASE_URL", url.as_str()),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = &dir.path().join("unused.db");

    let migrated = cli(nowhere, &["migrate"], &envs);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(stdout(&migrated).contains("storage: postgres schema is up to date"));
    let check = cli(nowhere, &["config", "check"], &envs);
    assert!(check.status.success(), "{}", stderr(&check));
    assert!(stdout(&check).contains("storage: postgres reachable"));
    assert!(
        !stdout(&check).contains(&schema.name),
        "DATABASE_URL is a secret"
    );

    let store = schema.store().await;
    let user = crate::helpers::user("pg-user");
    store
        .put_connection(Connection::disconnected(user, Provider::Dexcom, Utc::now()))
        .await
        .expect("connection");
    let users = cli(nowhere, &["users", "list", "--json"], &envs);
    assert!(users.status.success(), "{}", stderr(&users));
    let users: Value = serde_json::from_str(&stdout(&users)).expect("JSON");
    assert_eq!(users[0]["user_id"], "pg-user", "{users}");
    assert_eq!(users[0]["connections"]["dexcom"], "disconnected");
    let refused = cli(nowhere, &["sync", "--user", "pg-user"], &envs);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("status: disconnected"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn the_webhook_guides_test_vector_is_what_the_server_computes() {
    let doc = read("docs/webhooks.md");
    let doc = &doc[doc.find("### Test vector").expect("a test vector section")..];
    let cell = |label: &str| -> String {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {label}")))
            .unwrap_or_else(|| panic!("no {label} row in the test vector"));
        let value = row.rsplit('|').nth(1).expect("a value cell").trim();
        value.trim_matches('`').to_owned()
    };
    let timestamp: i64 = cell("timestamp").parse().expect("a number");
    let signed = sign(
        cell("secret").as_bytes(),
        timestamp,
        cell("body").as_bytes(),
    );
    assert_eq!(signed, cell("`X-Webhook-Signature`"));
}
