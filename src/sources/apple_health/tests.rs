use super::parse::*;
use super::translate::*;
use super::*;
use crate::domain::{GlucoseUnit, ReadingType};

/// The head of a real export: declaration, the DTD with its comments, the root.
const HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 13 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
]>
<HealthData locale="en_US">
 <ExportDate value="2024-03-10 10:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1980-01-01" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>
"#;

/// 2024-06-01T00:00:00Z: after every sample below but the future ones.
const NOW: i64 = 1_717_200_000;

fn doc(body: &str) -> String {
    format!("{HEAD}{body}</HealthData>\n")
}

fn parse_all(xml: &str) -> Result<Vec<Parsed>, ParseError> {
    let mut parser = ExportParser::new(xml.as_bytes());
    let mut out = Vec::new();
    while let Some(item) = parser.next_item()? {
        out.push(item);
    }
    Ok(out)
}

fn glucose_record(unit: &str, value: &str, at: &str) -> String {
    format!(
        r#" <Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName="Dexcom G7" sourceVersion="2.1" device="&lt;&lt;HKDevice: 0x1&gt;, name:G7&gt;" unit="{unit}" creationDate="{at}" startDate="{at}" endDate="{at}" value="{value}"/>
"#
    )
}

fn sleep_record(stage: &str, start: &str, end: &str, source: &str) -> String {
    format!(
        r#" <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="{source}" sourceVersion="10.3" creationDate="{end}" startDate="{start}" endDate="{end}" value="HKCategoryValueSleepAnalysis{stage}"/>
"#
    )
}

fn line_of(xml: &str, needle: &str) -> u64 {
    xml[..xml.find(needle).expect("needle")]
        .matches('\n')
        .count() as u64
        + 1
}

#[test]
fn glucose_in_mg_dl_and_mmol_l_through_the_dtd() {
    let xml = doc(&format!(
        "{}{}{}",
        glucose_record("mg/dL", "120", "2024-03-01 07:15:00 +0100"),
        glucose_record(
            "mmol<180.1558800000541>/L",
            "5.5",
            "2024-03-01 07:20:00 +0100"
        ),
        r#" <Record type="HKQuantityTypeIdentifierStepCount" sourceName="iPhone" unit="count" startDate="2024-03-01 07:00:00 +0100" endDate="2024-03-01 07:10:00 +0100" value="120">
  <MetadataEntry key="HKMetadataKeySyncVersion" value="1"/>
 </Record>
"#
    ));
    let items = parse_all(&xml).unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    let Parsed::Glucose(first) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(
        (first.value, first.unit, first.source_name.as_str()),
        (120.0, GlucoseUnit::MgDl, "Dexcom G7")
    );
    assert_eq!(first.start.timestamp(), 1_709_273_700); // 06:15:00Z
    assert_eq!(first.line, line_of(&xml, "value=\"120\"/>"));
    let Parsed::Glucose(second) = &items[1] else {
        panic!("{items:?}")
    };
    assert_eq!(second.unit, GlucoseUnit::MmolL);
    let mut sources = SourceNames::default();
    let row = glucose_row(second, &mut sources).unwrap();
    assert_eq!(row.mg_dl.get(), 99, "5.5 mmol/L with the domain's factor");
    assert_eq!(row.offset_minutes, 60);
    let reading = reading(&row, &crate::domain::UserId::parse("u1").unwrap(), &sources).unwrap();
    assert_eq!(reading.source.as_str(), "apple_health");
    assert_eq!(reading.reading_type, ReadingType::Cgm);
    assert_eq!(reading.device.device_id(), Some("Dexcom G7"));
    assert_eq!(reading.display_offset_minutes, Some(60));
    let id = reading.source_record_id.clone().unwrap();
    assert!(id.starts_with("ah-") && id.len() == 35, "{id}");
    assert_eq!(
        Some(id),
        super::translate::reading(&row, &crate::domain::UserId::parse("u1").unwrap(), &sources)
            .unwrap()
            .source_record_id,
        "deterministic"
    );
}

#[test]
fn units_apple_writes() {
    assert_eq!(glucose_unit("mg/dL"), Some(GlucoseUnit::MgDl));
    assert_eq!(
        glucose_unit("mmol<180.1558800000541>/L"),
        Some(GlucoseUnit::MmolL)
    );
    assert_eq!(glucose_unit("mmol/L"), Some(GlucoseUnit::MmolL));
    assert_eq!(glucose_unit("mmol<18.0>/L"), None);
    assert_eq!(glucose_unit("g/L"), None);
}

#[test]
fn bad_values_are_skipped_with_their_line_and_out_of_range_glucose_too() {
    let xml = doc(&format!(
        "{}{}{}",
        glucose_record("mg/dL", "abc", "2024-03-01 07:15:00 +0100"),
        glucose_record("mg/dL", "900", "2024-03-01 07:20:00 +0100"),
        glucose_record("mg/dL", "100", "2024-03-01T07:25:00Z"),
    ));
    let items = parse_all(&xml).unwrap();
    let Parsed::Skipped(skip) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(skip.line, line_of(&xml, "value=\"abc\""));
    assert!(skip.detail.contains("value=\"abc\""), "{skip:?}");
    let Parsed::Glucose(high) = &items[1] else {
        panic!("{items:?}")
    };
    let skip = glucose_row(high, &mut SourceNames::default()).unwrap_err();
    assert_eq!(
        (skip.reason, skip.line),
        (GLUCOSE_OUT_OF_RANGE, line_of(&xml, "value=\"900\""))
    );
    let Parsed::Skipped(skip) = &items[2] else {
        panic!("{items:?}")
    };
    assert!(skip.detail.contains("startDate"), "{skip:?}");
}

#[test]
fn a_malformed_attribute_fails_naming_the_line_and_element() {
    let bad = r#" <Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName="G7" unit="mg/dL" startDate="2024-03-01 07:15:00 +0100" endDate="2024-03-01 07:15:00 +0100" value=120/>
"#;
    let xml = doc(&format!(
        "{}{bad}",
        glucose_record("mg/dL", "110", "2024-03-01 07:10:00 +0100")
    ));
    let err = parse_all(&xml).unwrap_err();
    let line = line_of(&xml, "value=120");
    match &err {
        ParseError::Syntax { line: at, message } => {
            assert_eq!(*at, line, "{err}");
            assert!(message.contains("<Record>"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with(&format!("line {line}:")));
}

#[test]
fn a_truncated_file_names_the_line() {
    let full = doc(&format!(
        "{}{}{}",
        r#" <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="W" unit="count/min" startDate="2024-03-01 07:00:00 +0100" endDate="2024-03-01 07:00:00 +0100" value="60">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
"#,
        glucose_record("mg/dL", "110", "2024-03-01 07:10:00 +0100"),
        glucose_record("mg/dL", "111", "2024-03-01 07:15:00 +0100")
    ));
    // Cut inside the second record's tag.
    let cut_at = full.find("value=\"111\"").unwrap();
    let err = parse_all(&full[..cut_at]).unwrap_err();
    let line = line_of(&full, "value=\"111\"");
    assert!(
        matches!(&err, ParseError::Syntax { line: at, message }
            if *at == line && message.contains("inside <HealthData> opened at line") && !message.contains("<Record>")),
        "{err}"
    );
    // Cut between elements: the root is never closed.
    let cut_at = full.find("</HealthData>").unwrap();
    let err = parse_all(&full[..cut_at]).unwrap_err();
    assert!(
        matches!(&err, ParseError::Truncated { element, opened, .. } if element == "HealthData" && *opened == line_of(&full, "<HealthData")),
        "{err}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    // Not an export at all.
    assert!(matches!(
        parse_all("<?xml version=\"1.0\"?>\n<Other/>\n").unwrap_err(),
        ParseError::NotAnExport { line: 2, .. }
    ));
    assert!(matches!(
        parse_all("").unwrap_err(),
        ParseError::NotAnExport { .. }
    ));
}

#[test]
fn records_in_a_correlation_are_not_read_twice_and_user_entered_is_manual() {
    let xml = doc(&format!(
        r#" <Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName="Health" unit="mg/dL" startDate="2024-03-01 07:15:00 +0100" endDate="2024-03-01 07:15:00 +0100" value="140">
  <MetadataEntry key="HKWasUserEntered" value="1"/>
 </Record>
 <Correlation type="HKCorrelationTypeIdentifierFood" sourceName="App" startDate="2024-03-01 07:15:00 +0100" endDate="2024-03-01 07:15:00 +0100">
{} </Correlation>
"#,
        glucose_record("mg/dL", "150", "2024-03-01 07:15:00 +0100")
    ));
    let mut parser = ExportParser::new(xml.as_bytes());
    let mut items = Vec::new();
    while let Some(item) = parser.next_item().unwrap() {
        items.push(item);
    }
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(&items[0], Parsed::Glucose(g) if g.user_entered && g.value == 140.0));
    assert_eq!(parser.position().records, 2, "every Record counts");
}

#[test]
fn one_reading_per_instant_under_the_conflict_rule() {
    let row = |start, mg: u16, manual| GlucoseRow {
        start,
        end: start,
        mg_dl: crate::domain::MgDl::new(mg).unwrap(),
        offset_minutes: 0,
        source: 0,
        manual,
    };
    let mut rows = vec![
        row(300, 100, false),
        row(0, 90, false),
        row(300, 120, true), // typed in over a sensor value: the sensor's stays
        row(600, 130, true),
        row(600, 140, false), // a sensor value over a typed-in one: replaces it
        row(900, 150, false),
        row(900, 160, false), // the later wins
    ];
    assert_eq!(one_per_instant(&mut rows), 3);
    let kept: Vec<(i64, u16)> = rows.iter().map(|r| (r.start, r.mg_dl.get())).collect();
    assert_eq!(kept, vec![(0, 90), (300, 100), (600, 140), (900, 160)]);
}

fn sleep_rows(xml: &str) -> (Vec<SleepRow>, SourceNames) {
    let mut sources = SourceNames::default();
    let rows = parse_all(xml)
        .unwrap()
        .into_iter()
        .map(|item| match item {
            Parsed::Sleep(s) => sleep_row(&s, &mut sources),
            other => panic!("{other:?}"),
        })
        .collect();
    (rows, sources)
}

#[test]
fn sleep_stages_group_into_sessions_split_by_a_two_hour_gap() {
    let watch = "Apple Watch";
    let phone = "iPhone";
    let xml = doc(&[
        // Night 1: the phone's in-bed span over the watch's stages.
        sleep_record(
            "InBed",
            "2024-03-01 22:30:00 +0100",
            "2024-03-02 06:45:00 +0100",
            phone,
        ),
        sleep_record(
            "AsleepCore",
            "2024-03-01 23:00:00 +0100",
            "2024-03-02 01:00:00 +0100",
            watch,
        ),
        sleep_record(
            "AsleepDeep",
            "2024-03-02 01:00:00 +0100",
            "2024-03-02 02:00:00 +0100",
            watch,
        ),
        sleep_record(
            "Awake",
            "2024-03-02 02:00:00 +0100",
            "2024-03-02 02:10:00 +0100",
            watch,
        ),
        sleep_record(
            "AsleepREM",
            "2024-03-02 02:10:00 +0100",
            "2024-03-02 03:00:00 +0100",
            watch,
        ),
        // 1 h 59 min later: the same session.
        sleep_record(
            "AsleepCore",
            "2024-03-02 04:59:00 +0100",
            "2024-03-02 06:30:00 +0100",
            watch,
        ),
        // Night 2, out of order in the file, an older watch: Asleep only.
        sleep_record(
            "Asleep",
            "2024-03-02 23:00:00 +0100",
            "2024-03-03 06:00:00 +0100",
            watch,
        ),
        // A nap more than 2 h after night 1's end.
        sleep_record(
            "AsleepUnspecified",
            "2024-03-02 13:00:00 +0100",
            "2024-03-02 13:40:00 +0100",
            watch,
        ),
    ]
    .concat());
    let (rows, sources) = sleep_rows(&xml);
    let (sessions, skips) = sleep_sessions(rows, &sources, NOW);
    assert!(skips.is_empty(), "{skips:?}");
    assert_eq!(sessions.len(), 3, "{sessions:#?}");
    let night = &sessions[0];
    assert_eq!(night.source_name, watch, "the source with stages");
    assert_eq!(night.sleep_start.to_rfc3339(), "2024-03-01T22:00:00+00:00");
    assert_eq!(night.sleep_end.to_rfc3339(), "2024-03-02T05:30:00+00:00");
    assert_eq!(
        (
            night.light_minutes,
            night.deep_minutes,
            night.rem_minutes,
            night.awake_minutes,
            night.asleep_unspecified_minutes
        ),
        (120 + 91, 60, 50, 10, 0)
    );
    assert_eq!(night.asleep_minutes(), 321);
    assert_eq!(night.utc_offset_minutes, 60);
    let nap = &sessions[1];
    assert_eq!((nap.asleep_unspecified_minutes, nap.light_minutes), (40, 0));
    assert_eq!(sessions[2].asleep_unspecified_minutes, 420);
    // Deterministic ids, distinct per session.
    let (rows, sources) = sleep_rows(&xml);
    let again = sleep_sessions(rows, &sources, NOW).0;
    assert_eq!(sessions, again);
    assert_ne!(sessions[0].external_id, sessions[2].external_id);
}

#[test]
fn overlapping_samples_of_one_stage_count_once_and_too_long_sessions_are_skipped() {
    let w = "Watch";
    let xml = doc(&[
        sleep_record(
            "AsleepCore",
            "2024-03-01 23:00:00 +0000",
            "2024-03-02 01:00:00 +0000",
            w,
        ),
        sleep_record(
            "AsleepCore",
            "2024-03-02 00:00:00 +0000",
            "2024-03-02 02:00:00 +0000",
            w,
        ),
        // 30 h of samples with no 2 h gap.
        sleep_record(
            "Asleep",
            "2024-03-05 00:00:00 +0000",
            "2024-03-05 20:00:00 +0000",
            w,
        ),
        sleep_record(
            "Asleep",
            "2024-03-05 21:00:00 +0000",
            "2024-03-06 06:00:00 +0000",
            w,
        ),
    ]
    .concat());
    let (rows, sources) = sleep_rows(&xml);
    let (sessions, skips) = sleep_sessions(rows, &sources, NOW);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].light_minutes, 180);
    assert_eq!(skips.len(), 1);
    assert_eq!(skips[0].reason, SLEEP_TOO_LONG);
    assert_eq!(skips[0].line, line_of(&xml, "2024-03-05 00:00:00"));
}

#[test]
fn workouts_map_to_activity_types_with_duration_and_energy() {
    let xml = doc(
        r#" <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="32.5" durationUnit="min" totalDistance="2.8" totalDistanceUnit="km" totalEnergyBurned="140.2" totalEnergyBurnedUnit="Cal" sourceName="Apple Watch" sourceVersion="9.1" creationDate="2024-03-01 18:33:00 +0100" startDate="2024-03-01 18:00:00 +0100" endDate="2024-03-01 18:32:30 +0100">
  <MetadataEntry key="HKIndoorWorkout" value="0"/>
  <WorkoutEvent type="HKWorkoutEventTypeSegment" date="2024-03-01 18:00:00 +0100" duration="10" durationUnit="min"/>
 </Workout>
 <Workout workoutActivityType="HKWorkoutActivityTypeFunctionalStrengthTraining" duration="2700" durationUnit="s" sourceName="Apple Watch" startDate="2024-03-02 18:00:00 +0100" endDate="2024-03-02 18:45:00 +0100">
  <WorkoutStatistics type="HKQuantityTypeIdentifierHeartRate" startDate="2024-03-02 18:00:00 +0100" endDate="2024-03-02 18:45:00 +0100" average="120" unit="count/min"/>
  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" startDate="2024-03-02 18:00:00 +0100" endDate="2024-03-02 18:45:00 +0100" sum="1046" unit="kJ"/>
 </Workout>
 <Workout workoutActivityType="HKWorkoutActivityTypeYoga" sourceName="Yoga App" startDate="2024-03-03 07:00:00 +0100" endDate="2024-03-03 07:20:00 +0100"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="0.2" durationUnit="min" sourceName="Apple Watch" startDate="2024-03-04 07:00:00 +0100" endDate="2024-03-04 07:00:12 +0100"/>
"#,
    );
    let items = parse_all(&xml).unwrap();
    let workouts: Vec<Result<AppleWorkout, Skip>> = items
        .iter()
        .map(|item| match item {
            Parsed::Workout(w) => workout(w, NOW),
            other => panic!("{other:?}"),
        })
        .collect();
    let walk = workouts[0].as_ref().unwrap();
    assert_eq!(
        (
            walk.activity_type,
            walk.duration_minutes,
            walk.calories_burned
        ),
        (ActivityKind::Walking, 33, Some(140))
    );
    assert_eq!(walk.start.to_rfc3339(), "2024-03-01T17:00:00+00:00");
    let strength = workouts[1].as_ref().unwrap();
    assert_eq!(
        (
            strength.activity_type,
            strength.duration_minutes,
            strength.calories_burned
        ),
        (ActivityKind::Strength, 45, Some(250))
    );
    let yoga = workouts[2].as_ref().unwrap();
    assert_eq!(
        (
            yoga.activity_type.as_str(),
            yoga.apple_activity_type.as_str(),
            yoga.duration_minutes,
            yoga.calories_burned
        ),
        ("other", "Yoga", 20, None)
    );
    let short = workouts[3].as_ref().unwrap_err();
    assert_eq!(short.reason, WORKOUT_DURATION);
    for (raw, kind) in [
        ("Running", "running"),
        ("Cycling", "cycling"),
        ("TraditionalStrengthTraining", "strength"),
        ("Swimming", "swimming"),
        ("Hiking", "other"),
    ] {
        assert_eq!(ActivityKind::from_apple(raw).as_str(), kind);
    }
}

#[test]
fn read_export_reads_the_xml_inside_a_zip_and_skips_are_summarised() {
    use std::io::Write;
    let xml = doc(&format!(
        "{}{}{}",
        glucose_record("mg/dL", "120", "2024-03-01 07:15:00 +0100"),
        glucose_record("mg/dL", "700", "2024-03-01 07:20:00 +0100"),
        sleep_record(
            "AsleepCore",
            "2024-03-01 23:00:00 +0100",
            "2024-03-02 01:00:00 +0100",
            "W"
        ),
    ));
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("export.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("apple_health_export/export_cda.xml", options)
            .unwrap();
        zip.write_all(b"<ClinicalDocument/>").unwrap();
        zip.start_file("apple_health_export/export.xml", options)
            .unwrap();
        zip.write_all(xml.as_bytes()).unwrap();
        zip.finish().unwrap();
    }
    let xml_path = dir.path().join("export.xml");
    std::fs::write(&xml_path, &xml).unwrap();
    for path in [&zip_path, &xml_path] {
        let contents = read_export(path, &mut |_| {}).unwrap();
        assert_eq!(contents.glucose.len(), 1, "{path:?}");
        assert_eq!(contents.sleep.len(), 1);
        assert_eq!(contents.total_bytes, xml.len() as u64);
        assert_eq!(contents.position.bytes, xml.len() as u64);
        assert_eq!(contents.position.records, 3);
        assert_eq!(contents.skips.total(), 1);
        let group = &contents.skips.by_reason[GLUCOSE_OUT_OF_RANGE];
        assert_eq!(
            group.examples,
            vec![format!(
                "line {}: value 700 mg/dL: must be between 20 and 600 mg/dL",
                line_of(&xml, "value=\"700\"")
            )]
        );
    }
    // A truncated zip entry fails like a truncated file.
    std::fs::write(&xml_path, &xml[..xml.len() - 20]).unwrap();
    let err = read_export(&xml_path, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ImportError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("nothing was stored"), "{err}");
}

#[test]
fn sleep_and_workouts_ending_in_the_future_are_skipped() {
    let xml = doc(&[
        sleep_record(
            "AsleepCore",
            "2024-05-31 23:00:00 +0000",
            "2024-06-01 00:05:00 +0000",
            "W",
        ),
        sleep_record(
            "AsleepCore",
            "2024-06-01 23:00:00 +0000",
            "2024-06-02 06:00:00 +0000",
            "W",
        ),
    ]
    .concat());
    let (rows, sources) = sleep_rows(&xml);
    let (sessions, skips) = sleep_sessions(rows, &sources, NOW);
    assert_eq!(sessions.len(), 1, "ends 5 min after now: kept");
    assert_eq!(
        (skips.len(), skips[0].reason, skips[0].line),
        (1, IN_THE_FUTURE, line_of(&xml, "2024-06-01 23:00:00"))
    );
    let xml = doc(
        r#" <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="30" durationUnit="min" sourceName="W" startDate="2024-06-01 00:00:00 +0000" endDate="2024-06-01 00:30:00 +0000"/>
"#,
    );
    let Parsed::Workout(sample) = &parse_all(&xml).unwrap()[0] else {
        panic!()
    };
    assert_eq!(workout(sample, NOW).unwrap_err().reason, IN_THE_FUTURE);
    assert!(workout(sample, NOW + 1800).is_ok());
}

#[test]
fn stages_of_half_minutes_never_make_a_night_longer_than_itself() {
    // Three stages of 100.5 min each, back to back: 301.5 min in all. Rounded
    // each to the nearest minute they made 303 > 301, and the journal refused
    // the night (duration_minutes over the session).
    let watch = "Apple Watch";
    let xml = doc(&[
        sleep_record(
            "AsleepCore",
            "2024-03-01 23:00:00 +0000",
            "2024-03-02 00:40:30 +0000",
            watch,
        ),
        sleep_record(
            "AsleepDeep",
            "2024-03-02 00:40:30 +0000",
            "2024-03-02 02:21:00 +0000",
            watch,
        ),
        sleep_record(
            "AsleepREM",
            "2024-03-02 02:21:00 +0000",
            "2024-03-02 04:01:30 +0000",
            watch,
        ),
    ]
    .concat());
    let (rows, sources) = sleep_rows(&xml);
    let (sessions, skips) = sleep_sessions(rows, &sources, NOW);
    assert!(skips.is_empty(), "{skips:?}");
    let night = &sessions[0];
    assert_eq!(
        (night.light_minutes, night.deep_minutes, night.rem_minutes),
        (100, 100, 100),
        "whole minutes, rounded down"
    );
    let parsed = crate::domain::SleepSession::parse(
        super::journal::sleep_input(night),
        "u1",
        crate::domain::TimeZoneName::UTC,
        &crate::domain::TimePolicy::default(),
        chrono::DateTime::from_timestamp(NOW, 0).expect("now"),
    );
    assert!(parsed.is_ok(), "the journal takes the night: {parsed:?}");
}
