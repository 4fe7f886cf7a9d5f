//! `import apple-health` end to end: a file written by scripts/gen-apple-health.py
//! (the DTD, step counts, heart rates, glucose, sleep stages, workouts), imported
//! into SQLite and PostgreSQL through the pipeline; the readings stored are the
//! generator's; a second import stores nothing new; a truncated file stores nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use cgm_hub::domain::{TimePolicy, UserId};
use cgm_hub::pipeline::Pipeline;
use cgm_hub::records::journal::{JournalBody, JournalEntry, JournalKind, JournalQuery};
use cgm_hub::sources::apple_health::{import, ImportError, StoreJournal};
use cgm_hub::store::{Order, Scan, Store};

use crate::helpers::{postgres_store, run_cgm_hub, sqlite_store};

/// Runs the generator; returns its summary (what it wrote).
fn generate(dir: &Path, name: &str, zip: bool) -> (PathBuf, Value) {
    let out = dir.join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-apple-health.py");
    let mut args = vec![
        script.display().to_string(),
        "--size-mb".into(),
        "1.2".into(),
        "--seed".into(),
        "7".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    if zip {
        args.push("--zip".into());
    }
    let run = std::process::Command::new("python3")
        .args(&args)
        .output()
        .expect("python3 runs the generator");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (out, serde_json::from_slice(&run.stdout).expect("summary"))
}

/// The journal entries of one kind stored for `user`.
async fn entries_of(store: &dyn Store, user: &UserId, kind: JournalKind) -> Vec<JournalEntry> {
    store
        .list_journal_entries(JournalQuery {
            user_id: user.clone(),
            kind,
            from: None,
            until: None,
            descending: false,
            after: None,
            limit: 100_000,
        })
        .await
        .expect("list journal")
}

async fn stored(store: &dyn Store, user: &UserId) -> Vec<cgm_hub::domain::StoredReading> {
    store
        .scan_readings(Scan {
            user_id: user.clone(),
            from: 0,
            until: i64::MAX / 2,
            order: Order::Asc,
            limit: 100_000,
        })
        .await
        .expect("scan")
}

async fn import_twice(store: Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let (zip, written) = generate(dir.path(), "export.zip", true);
    let glucose = written["glucose_instants"].as_u64().unwrap();
    assert!(glucose > 500, "{written}");
    let user = UserId::parse("apple-user").unwrap();
    let pipeline = Pipeline::new(store.clone(), TimePolicy::default());
    let journal = StoreJournal::new(store.clone(), TimePolicy::default());

    let first = import(zip.clone(), &user, &pipeline, &journal, |_| {})
        .await
        .expect("first import");
    assert_eq!(first.records, written["records"].as_u64().unwrap());
    assert_eq!(
        first.workout_elements,
        written["workouts"].as_u64().unwrap()
    );
    assert_eq!(
        (first.readings, first.tally.inserted, first.tally.duplicates),
        (glucose, glucose, 0)
    );
    assert_eq!(first.skips.total(), 0, "{:?}", first.skips);
    assert_eq!(first.sleep_sessions, written["nights"].as_u64().unwrap());
    assert_eq!(first.sleep.new, first.sleep_sessions);
    assert_eq!(first.workouts, written["workouts"].as_u64().unwrap());
    assert_eq!(first.workouts_put.new, first.workouts);
    assert_eq!((first.sleep.refused, first.workouts_put.refused), (0, 0));

    // Sleep sessions and activities are in the journal, from Apple Health.
    let nights = entries_of(store.as_ref(), &user, JournalKind::Sleep).await;
    assert_eq!(nights.len() as u64, first.sleep_sessions);
    for night in &nights {
        assert_eq!(night.source, "apple_health");
        assert!(night
            .external_id
            .as_deref()
            .is_some_and(|id| id.starts_with("ah-")));
        let JournalBody::Sleep(s) = &night.body else {
            panic!("{night:?}")
        };
        assert!(s.sleep_end() > s.sleep_start());
        assert!(s.duration_minutes() > 300, "{s:?}");
        assert_eq!(
            s.date(),
            s.sleep_end().date_naive(),
            "UTC without a profile"
        );
    }
    let activities = entries_of(store.as_ref(), &user, JournalKind::Activity).await;
    assert_eq!(activities.len() as u64, first.workouts);
    for activity in &activities {
        assert_eq!(activity.source, "apple_health");
        let item = activity.item();
        let minutes = item["duration_minutes"].as_u64().unwrap();
        assert!((20..=75).contains(&minutes), "{item:?}");
        assert!(item["calories_burned"].as_f64().is_some(), "{item:?}");
    }

    let readings = stored(store.as_ref(), &user).await;
    assert_eq!(readings.len() as u64, glucose);
    let manual = readings
        .iter()
        .filter(|r| r.reading.reading_type == cgm_hub::domain::ReadingType::Manual)
        .count();
    assert!(manual >= 1, "the typed-in meter readings");
    for r in &readings {
        assert_eq!(r.reading.source.as_str(), "apple_health");
        assert!(r
            .reading
            .source_record_id
            .as_deref()
            .is_some_and(|id| id.starts_with("ah-")));
        assert!((45..=350).contains(&r.reading.glucose.mg_dl().get()));
    }
    assert!(readings
        .iter()
        .any(|r| r.reading.device.device_id() == Some("Dexcom G7")));

    // Again, from the unzipped XML: nothing new.
    let (xml, _) = generate(dir.path(), "export.xml", false);
    let second = import(xml, &user, &pipeline, &journal, |_| {})
        .await
        .expect("second import");
    assert_eq!(
        (
            second.tally.inserted,
            second.tally.updated,
            second.tally.duplicates
        ),
        (0, 0, glucose)
    );
    assert_eq!((second.sleep.new, second.workouts_put.new), (0, 0));
    assert_eq!(second.sleep.duplicate, first.sleep_sessions);
    assert_eq!(second.workouts_put.duplicate, first.workouts);
    assert_eq!(stored(store.as_ref(), &user).await, readings);
    assert_eq!(
        entries_of(store.as_ref(), &user, JournalKind::Sleep).await,
        nights
    );
    assert_eq!(
        entries_of(store.as_ref(), &user, JournalKind::Activity).await,
        activities
    );

    // A truncated copy stores nothing, and says where it ends.
    let text = std::fs::read_to_string(dir.path().join("export.xml")).unwrap();
    let cut = dir.path().join("cut.xml");
    std::fs::write(&cut, &text[..text.len() * 2 / 3]).unwrap();
    let other = UserId::parse("apple-cut").unwrap();
    let err = import(cut, &other, &pipeline, &journal, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("line "), "{err}");
    assert!(stored(store.as_ref(), &other).await.is_empty());
    assert!(entries_of(store.as_ref(), &other, JournalKind::Sleep)
        .await
        .is_empty());
}

#[tokio::test]
async fn imports_into_sqlite_and_a_second_import_stores_nothing_new() {
    let store = sqlite_store().await;
    import_twice(store.store.clone()).await;
}

#[tokio::test]
async fn imports_into_postgres_and_a_second_import_stores_nothing_new() {
    let store = postgres_store().await;
    import_twice(store.store.clone()).await;
}

/// The command: progress on stderr, the summary on stdout, nothing new the
/// second time, and a truncated file refused with its line, exit 1.
#[test]
fn the_cli_imports_an_export_and_reports_what_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (zip, written) = generate(dir.path(), "export.zip", true);
    let glucose = written["glucose_instants"].as_u64().unwrap();
    let db = dir.path().join("cgm.db").display().to_string();
    let env = [("SQLITE_PATH", db.as_str())];
    let migrated = run_cgm_hub(dir.path(), &["migrate"], &env);
    assert!(migrated.status.success());
    let zip = zip.display().to_string();
    let args = ["import", "apple-health", "--user", "u1", zip.as_str()];

    let first = run_cgm_hub(dir.path(), &args, &env);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "glucose readings: {glucose} new, 0 updated, 0 duplicate"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "sleep sessions: {n} ({n} new, 0 duplicate, 0 refused)",
            n = written["nights"]
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "workouts: {n} ({n} new, 0 duplicate, 0 refused)",
            n = written["workouts"]
        )),
        "{stdout}"
    );
    assert!(stdout.contains("skipped records: 0"), "{stdout}");

    let second = run_cgm_hub(dir.path(), &args, &env);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "glucose readings: 0 new, 0 updated, {glucose} duplicate"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "sleep sessions: {n} (0 new, {n} duplicate, 0 refused)",
            n = written["nights"]
        )),
        "{stdout}"
    );

    let cut = dir.path().join("cut.xml");
    std::fs::write(&cut, b"<?xml version=\"1.0\"?>\n<HealthData locale=\"en_US\">\n <Record type=\"HKQuantityTypeIdentifierBloodGlucose\" sourceName=\"G7\" unit=\"mg/dL\" startDate=\"2024-03-01 07:15:00 +0100\" endDate=\"2024-03-01 07:15:00 +0100\" value=\"120\"/>\n <Record type=\"HKQuantityTypeIdentifierBloodGlucose\" sourceN").unwrap();
    let cut = cut.display().to_string();
    let failed = run_cgm_hub(
        dir.path(),
        &["import", "apple-health", "--user", "u2", cut.as_str()],
        &env,
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 4:") && stderr.contains("nothing was stored"),
        "{stderr}"
    );

    let missing = run_cgm_hub(
        dir.path(),
        &["import", "apple-health", "--user", "u1", "nowhere.zip"],
        &env,
    );
    assert_eq!(missing.status.code(), Some(2));
}
