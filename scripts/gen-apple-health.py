#!/usr/bin/env python3
"""Writes a synthetic Apple Health export.xml (or export.zip) of about the size asked.

Realistic in what the importer has to wade through: the XML declaration and the
DTD of a real export, <ExportDate> and <Me>, then day after day of step counts,
heart rates, active and basal energy and walking distance (most of a real
export), blood glucose every 5 minutes from a CGM app (plus a typed-in meter
reading every few days, with HKWasUserEntered), sleep stages every night (the
phone's in-bed span and the watch's core/deep/REM/awake samples), a workout
most days (with MetadataEntry, WorkoutEvent and WorkoutStatistics children) and
an ActivitySummary, with attributes in Apple's order and the long `device`
strings Apple writes. Deterministic for a given seed.

Usage: gen-apple-health.py --size-mb 1000 --out export.xml [--zip] [--mmol] [--seed 1]
Prints a JSON summary (what was written, by kind) on standard output.
"""

import argparse
import json
import math
import os
import random
import sys
import time
import zipfile

DTD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 13 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Me EMPTY>
<!ATTLIST Me
  HKCharacteristicTypeIdentifierDateOfBirth                   CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBiologicalSex                 CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBloodType                     CDATA #REQUIRED
  HKCharacteristicTypeIdentifierFitzpatrickSkinType           CDATA #REQUIRED
  HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse   CDATA #IMPLIED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
<!ATTLIST Correlation
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT Workout ((MetadataEntry|WorkoutEvent|WorkoutRoute|WorkoutStatistics)*)>
<!ATTLIST Workout
  workoutActivityType   CDATA #REQUIRED
  duration              CDATA #IMPLIED
  durationUnit          CDATA #IMPLIED
  totalDistance         CDATA #IMPLIED
  totalDistanceUnit     CDATA #IMPLIED
  totalEnergyBurned     CDATA #IMPLIED
  totalEnergyBurnedUnit CDATA #IMPLIED
  sourceName            CDATA #REQUIRED
  sourceVersion         CDATA #IMPLIED
  device                CDATA #IMPLIED
  creationDate          CDATA #IMPLIED
  startDate             CDATA #REQUIRED
  endDate               CDATA #REQUIRED
>
<!ELEMENT WorkoutEvent (MetadataEntry?)>
<!ATTLIST WorkoutEvent
  type         CDATA #REQUIRED
  date         CDATA #REQUIRED
  duration     CDATA #IMPLIED
  durationUnit CDATA #IMPLIED
>
<!ELEMENT WorkoutStatistics EMPTY>
<!ATTLIST WorkoutStatistics
  type      CDATA #REQUIRED
  startDate CDATA #REQUIRED
  endDate   CDATA #REQUIRED
  average   CDATA #IMPLIED
  minimum   CDATA #IMPLIED
  maximum   CDATA #IMPLIED
  sum       CDATA #IMPLIED
  unit      CDATA #IMPLIED
>
<!ELEMENT ActivitySummary EMPTY>
<!ATTLIST ActivitySummary
  dateComponents           CDATA #IMPLIED
  activeEnergyBurned       CDATA #IMPLIED
  activeEnergyBurnedGoal   CDATA #IMPLIED
  activeEnergyBurnedUnit   CDATA #IMPLIED
  appleExerciseTime        CDATA #IMPLIED
  appleExerciseTimeGoal    CDATA #IMPLIED
  appleStandHours          CDATA #IMPLIED
  appleStandHoursGoal      CDATA #IMPLIED
>
<!ELEMENT MetadataEntry EMPTY>
<!ATTLIST MetadataEntry
  key   CDATA #REQUIRED
  value CDATA #REQUIRED
>
]>
"""

WATCH = "Jane&#8217;s Apple Watch"
WATCH_DEVICE = ("&lt;&lt;HKDevice: 0x283e9c5a0&gt;, name:Apple Watch, manufacturer:Apple Inc., "
                "model:Watch, hardware:Watch6,2, software:10.3&gt;")
PHONE = "Jane&#8217;s iPhone"
PHONE_DEVICE = ("&lt;&lt;HKDevice: 0x283e9c6e0&gt;, name:iPhone, manufacturer:Apple Inc., "
                "model:iPhone, hardware:iPhone15,2, software:17.3&gt;")
CGM = "Dexcom G7"
CGM_DEVICE = ("&lt;&lt;HKDevice: 0x283e9d1c0&gt;, name:CGM, manufacturer:Dexcom, model:G7, "
              "software:2.1.0, localIdentifier:8RPJ4T&gt;")
MMOL_UNIT = "mmol&lt;180.1558800000541&gt;/L"
MMOL_FACTOR = 18.015588

WORKOUTS = [
    ("Walking", 0.35), ("Running", 0.2), ("Cycling", 0.15),
    ("TraditionalStrengthTraining", 0.1), ("FunctionalStrengthTraining", 0.05),
    ("Swimming", 0.05), ("Yoga", 0.1),
]


def offset_for(month):
    return "+0200" if 4 <= month <= 10 else "+0100"


class Clock:
    """Local date-time strings for seconds since the first day's 00:00 UTC. The
    offset follows the UTC instant (+0200 April-October, else +0100), so that
    local times stay in order across the switch, as in real exports."""

    def __init__(self, first_day_epoch):
        self.first = first_day_epoch
        self.days = {}
        self.offsets = {}

    def offset(self, utc):
        day = utc // 86400
        off = self.offsets.get(day)
        if off is None:
            off = 7200 if 4 <= time.gmtime(utc).tm_mon <= 10 else 3600
            self.offsets[day] = off
        return off

    def day(self, d):
        """The local date of day d (days since the first, in UTC)."""
        local_day = (self.first + d * 86400 + 43200) // 86400
        s = self.days.get(local_day)
        if s is None:
            s = time.strftime("%Y-%m-%d", time.gmtime(local_day * 86400))
            self.days[local_day] = s
        return s, None

    def fmt(self, secs):
        utc = self.first + int(secs)
        off = self.offset(utc)
        local = utc + off
        local_day, rest = divmod(local, 86400)
        date = self.days.get(local_day)
        if date is None:
            date = time.strftime("%Y-%m-%d", time.gmtime(local_day * 86400))
            self.days[local_day] = date
        h, rest = divmod(rest, 3600)
        m, s = divmod(rest, 60)
        return f"{date} {h:02d}:{m:02d}:{s:02d} {'+0200' if off == 7200 else '+0100'}"

    def utc_epoch(self, secs):
        return self.first + int(secs)


def record(w, clock, rtype, source, version, device, unit, start, end, value, meta=None):
    created = clock.fmt(end + 60)
    dev = f' device="{device}"' if device else ""
    head = (f' <Record type="{rtype}" sourceName="{source}" sourceVersion="{version}"{dev} '
            f'unit="{unit}" creationDate="{created}" startDate="{clock.fmt(start)}" '
            f'endDate="{clock.fmt(end)}" value="{value}"')
    if meta:
        w(head + ">\n")
        for k, v in meta:
            w(f'  <MetadataEntry key="{k}" value="{v}"/>\n')
        w(" </Record>\n")
    else:
        w(head + "/>\n")


def sleep_record(w, clock, source, device, start, end, stage):
    dev = f' device="{device}"' if device else ""
    w(f' <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="{source}" '
      f'sourceVersion="10.3"{dev} creationDate="{clock.fmt(end + 120)}" '
      f'startDate="{clock.fmt(start)}" endDate="{clock.fmt(end)}" '
      f'value="HKCategoryValueSleepAnalysis{stage}">\n'
      f'  <MetadataEntry key="HKTimeZone" value="Europe/Berlin"/>\n </Record>\n')


def one_day(w, clock, d, rng, stats, mmol):
    base = d * 86400
    # Heart rate every ~5 minutes, around the clock (the watch).
    t = base + rng.randint(0, 120)
    while t < base + 86400:
        meta = [("HKMetadataKeyHeartRateMotionContext", rng.choice("012"))] if rng.random() < 0.3 else None
        record(w, clock, "HKQuantityTypeIdentifierHeartRate", WATCH, "10.3", WATCH_DEVICE,
               "count/min", t, t, rng.randint(52, 150), meta)
        stats["records"] += 1
        t += rng.randint(240, 360)
    # Steps and distance from the phone, active energy every ~2 min and basal
    # energy every ~10 min from the watch, while awake (07:00-23:00).
    for minute in range(7 * 60, 23 * 60, 10):
        s = base + minute * 60
        steps = rng.randint(0, 900)
        record(w, clock, "HKQuantityTypeIdentifierStepCount", PHONE, "17.3", PHONE_DEVICE,
               "count", s, s + 540, steps)
        record(w, clock, "HKQuantityTypeIdentifierDistanceWalkingRunning", PHONE, "17.3",
               PHONE_DEVICE, "km", s, s + 540, f"{steps * 0.00072:.5f}")
        record(w, clock, "HKQuantityTypeIdentifierBasalEnergyBurned", WATCH, "10.3",
               WATCH_DEVICE, "Cal", s, s + 600, f"{rng.uniform(10, 13):.3f}")
        stats["records"] += 3
    for minute in range(7 * 60, 23 * 60, 2):
        s = base + minute * 60 + rng.randint(0, 50)
        record(w, clock, "HKQuantityTypeIdentifierActiveEnergyBurned", WATCH, "10.3",
               WATCH_DEVICE, "Cal", s, s + 60, f"{rng.uniform(0.05, 4.0):.3f}")
        stats["records"] += 1
    # Blood glucose every 5 minutes from the CGM app (Dexcom writes with a 3 h delay).
    for i in range(288):
        s = base + i * 300 + 17
        mg = 120 + 45 * math.sin((s % 86400) / 86400 * 2 * math.pi * 3 + d) + rng.gauss(0, 8)
        mg = max(45, min(350, round(mg)))
        value = f"{mg / MMOL_FACTOR:.1f}" if mmol else str(mg)
        record(w, clock, "HKQuantityTypeIdentifierBloodGlucose", CGM, "2.1.0", CGM_DEVICE,
               MMOL_UNIT if mmol else "mg/dL", s, s, value,
               [("HKMetadataKeySyncIdentifier", f"8RPJ4T-{clock.utc_epoch(s)}"),
                ("HKMetadataKeySyncVersion", "1")])
        stats["records"] += 1
        stats["glucose"] += 1
        stats["glucose_instants"].add(clock.utc_epoch(s))
    # A typed-in meter reading every third day.
    if d % 3 == 0:
        s = base + 12 * 3600 + 4 * 60 + 31
        mg = rng.randint(80, 180)
        value = f"{mg / MMOL_FACTOR:.1f}" if mmol else str(mg)
        record(w, clock, "HKQuantityTypeIdentifierBloodGlucose", "Health", "17.3", None,
               MMOL_UNIT if mmol else "mg/dL", s, s, value,
               [("HKWasUserEntered", "1"), ("HKBloodGlucoseMealTime", "2")])
        stats["records"] += 1
        stats["glucose"] += 1
        stats["glucose_instants"].add(clock.utc_epoch(s))
    # The night starting this evening: in bed from the phone, stages from the watch.
    bed = base + 22 * 3600 + rng.randint(0, 5400)
    asleep = bed + rng.randint(300, 1800)
    wake = asleep + rng.randint(6 * 3600, 8 * 3600)
    sleep_record(w, clock, PHONE, None, bed, wake + 600, "InBed")
    stats["records"] += 1
    t = asleep
    while t < wake:
        stage = rng.choices(["AsleepCore", "AsleepDeep", "AsleepREM", "Awake"], [5, 2, 2, 1])[0]
        length = rng.randint(300, 2700) if stage != "Awake" else rng.randint(60, 600)
        end = min(t + length, wake)
        sleep_record(w, clock, WATCH, WATCH_DEVICE, t, end, stage)
        stats["records"] += 1
        t = end
    stats["nights"] += 1
    # A workout six days out of seven.
    if d % 7 != 3:
        kind = rng.choices([k for k, _ in WORKOUTS], [p for _, p in WORKOUTS])[0]
        start = base + 17 * 3600 + rng.randint(0, 7200)
        minutes = rng.uniform(20, 75)
        end = start + int(minutes * 60)
        kcal = minutes * rng.uniform(5, 11)
        w(f' <Workout workoutActivityType="HKWorkoutActivityType{kind}" duration="{minutes:.4f}" '
          f'durationUnit="min" sourceName="{WATCH}" sourceVersion="10.3" device="{WATCH_DEVICE}" '
          f'creationDate="{clock.fmt(end + 30)}" startDate="{clock.fmt(start)}" '
          f'endDate="{clock.fmt(end)}">\n'
          f'  <MetadataEntry key="HKIndoorWorkout" value="{rng.randint(0, 1)}"/>\n'
          f'  <MetadataEntry key="HKTimeZone" value="Europe/Berlin"/>\n'
          f'  <WorkoutEvent type="HKWorkoutEventTypeSegment" date="{clock.fmt(start)}" '
          f'duration="{minutes / 2:.4f}" durationUnit="min"/>\n'
          f'  <WorkoutStatistics type="HKQuantityTypeIdentifierHeartRate" startDate="{clock.fmt(start)}" '
          f'endDate="{clock.fmt(end)}" average="{rng.randint(100, 150)}" minimum="80" maximum="175" '
          f'unit="count/min"/>\n'
          f'  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" '
          f'startDate="{clock.fmt(start)}" endDate="{clock.fmt(end)}" sum="{kcal:.3f}" unit="Cal"/>\n'
          f' </Workout>\n')
        stats["workouts"] += 1
    date, _ = clock.day(d)
    w(f' <ActivitySummary dateComponents="{date}" activeEnergyBurned="{rng.uniform(200, 800):.3f}" '
      f'activeEnergyBurnedGoal="500" activeEnergyBurnedUnit="Cal" appleMoveTime="0" '
      f'appleMoveTimeGoal="0" appleExerciseTime="{rng.randint(5, 90)}" appleExerciseTimeGoal="30" '
      f'appleStandHours="{rng.randint(6, 14)}" appleStandHoursGoal="12"/>\n')


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mb", type=float, required=True, help="about this many MB of XML")
    p.add_argument("--out", required=True, help="export.xml, or export.zip with --zip")
    p.add_argument("--zip", action="store_true", help="write export.zip (apple_health_export/export.xml)")
    p.add_argument("--mmol", action="store_true", help="glucose in mmol/L (Apple's mmol<180.15...>/L)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--end-day", default=None,
                   help="last day (YYYY-MM-DD; default: 3 days before today, so every reading is in the past)")
    args = p.parse_args()

    rng = random.Random(args.seed)
    # About 610 KB a day: estimated from one generated day.
    sample = []
    probe = {"records": 0, "glucose": 0, "glucose_instants": set(), "nights": 0, "workouts": 0}
    one_day(sample.append, Clock(0), 0, random.Random(args.seed), probe, args.mmol)
    per_day = sum(len(s) for s in sample)
    days = max(1, round(args.size_mb * 1e6 / per_day))

    if args.end_day:
        end = int(time.mktime(time.strptime(args.end_day, "%Y-%m-%d"))) - time.timezone
    else:
        end = (int(time.time()) // 86400 - 3) * 86400
    first = end - (days - 1) * 86400
    clock = Clock(first)
    stats = {"records": 0, "glucose": 0, "glucose_instants": set(), "nights": 0, "workouts": 0}

    if args.zip:
        archive = zipfile.ZipFile(args.out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
        raw = archive.open("apple_health_export/export.xml", "w", force_zip64=True)
    else:
        raw = open(args.out, "wb")
    written = 0
    chunk = []

    def w(s):
        chunk.append(s)

    def flush():
        nonlocal written
        data = "".join(chunk).encode("utf-8")
        raw.write(data)
        written += len(data)
        chunk.clear()

    w(DTD)
    w('<HealthData locale="en_US">\n')
    w(f' <ExportDate value="{clock.fmt(days * 86400)}"/>\n')
    w(' <Me HKCharacteristicTypeIdentifierDateOfBirth="1984-05-12" '
      'HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale" '
      'HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet" '
      'HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet" '
      'HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>\n')
    for d in range(days):
        one_day(w, clock, d, rng, stats, args.mmol)
        flush()
    w("</HealthData>\n")
    flush()
    raw.close()
    if args.zip:
        archive.writestr("apple_health_export/export_cda.xml",
                         '<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"/>\n')
        archive.close()
    summary = {
        "path": os.path.abspath(args.out),
        "xml_bytes": written,
        "days": days,
        "first_day": clock.day(0)[0],
        "last_day": clock.day(days - 1)[0],
        "records": stats["records"],
        "glucose_records": stats["glucose"],
        "glucose_instants": len(stats["glucose_instants"]),
        "nights": stats["nights"],
        "workouts": stats["workouts"],
    }
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
