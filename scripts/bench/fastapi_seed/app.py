"""The seed's FastAPI stack, as the reference for scripts/bench-range.sh.

cgm-hub replaced a Python service; this is that service's read path written the
way it would have been (FastAPI + uvicorn, pydantic response models, SQLite
through the standard sqlite3 module, an HS256 bearer check with PyJWT, one audit
row inserted per request), so that the range endpoint can be compared with it in
one run on one machine. It serves only what the benchmark needs: the bulk write
that seeds readings and `GET /api/bg/{user_id}` with the contract's envelope,
reading JSON and keyset cursors.

    FASTAPI_DB=/tmp/x.db AUTH_JWT_SECRET=... uvicorn app:app --workers 2

Choices that favour this side (so the ratio measured against it is not flattered):
WAL with synchronous=NORMAL (the audit commit does not wait for the disk, where
cgm-hub's audit trail is durable), no rate limiter, no access log.
"""
import base64
import datetime
import json
import os
import sqlite3
import threading
import time
import uuid
from typing import Annotated, Literal, Optional

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

DB_PATH = os.environ.get("FASTAPI_DB", "fastapi_seed.db")
SECRET = os.environ["AUTH_JWT_SECRET"]
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]

TRENDS = {
    "doubleup": "rising_fast", "singleup": "rising", "fortyfiveup": "rising_slightly",
    "flat": "steady", "fortyfivedown": "falling_slightly", "singledown": "falling",
    "doubledown": "falling_fast", "none": "none", "notcomputable": "not_computable",
    "rateoutofrange": "rate_out_of_range",
}
TRENDS.update({v: v for v in list(TRENDS.values())})

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    user_id TEXT NOT NULL, ts INTEGER NOT NULL, glucose_value INTEGER NOT NULL,
    trend_direction TEXT, trend_rate REAL, device_id TEXT, serial_number TEXT,
    transmitter_id TEXT, reading_type TEXT NOT NULL, source TEXT NOT NULL,
    version INTEGER NOT NULL, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, user_id TEXT NOT NULL, outcome TEXT NOT NULL, request_id TEXT NOT NULL
);
"""

_local = threading.local()


def db() -> sqlite3.Connection:
    """One connection per worker thread (sqlite3 connections are not shared across threads)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB_PATH, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(SCHEMA)
        _local.conn = conn
    return conn


def iso_seconds(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def iso_millis(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_date(name: str, raw: str) -> int:
    try:
        if len(raw) == 10:
            return int(datetime.datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc).timestamp())
        t = datetime.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
        return int(t.timestamp()) + (1 if t.microsecond else 0)
    except ValueError:
        raise HTTPException(400, {"code": "VALIDATION_ERROR", "message": f"{name} is not a date"})


# Response models: the contract's reading and page.
class DeviceInfo(BaseModel):
    device_id: Optional[str] = Field(default=None, exclude_if=lambda v: v is None)
    serial_number: Optional[str] = Field(default=None, exclude_if=lambda v: v is None)
    transmitter_id: Optional[str] = Field(default=None, exclude_if=lambda v: v is None)


class ReadingOut(BaseModel):
    user_id: str
    timestamp: str
    glucose_value: int
    glucose_unit: str = "mg/dL"
    trend_direction: Optional[str]
    trend_rate: Optional[float]
    device_info: Optional[DeviceInfo] = Field(default=None, exclude_if=lambda v: v is None)
    reading_type: str
    source: str
    version: int
    created_at: str
    updated_at: str


class Pagination(BaseModel):
    next_cursor: Optional[str]
    prev_cursor: Optional[str]
    next: Optional[str]
    prev: Optional[str]
    limit: int


class ReadingsPage(BaseModel):
    readings: list[ReadingOut]
    pagination: Pagination


class PageEnvelope(BaseModel):
    status: Literal["success"] = "success"
    data: ReadingsPage


# Input model of the bulk write that seeds the benchmark.
class DeviceIn(BaseModel):
    device_id: Optional[str] = None
    serial_number: Optional[str] = None
    transmitter_id: Optional[str] = None


class ReadingIn(BaseModel):
    timestamp: datetime.datetime
    glucose_value: int = Field(ge=20, le=600)
    trend_direction: Optional[str] = None
    trend_rate: Optional[float] = None
    device_info: Optional[DeviceIn] = None
    reading_type: str = "CGM"
    source: str = "manual"


class BulkIn(BaseModel):
    readings: list[ReadingIn]


app = FastAPI(title="cgm seed (reference)")
bearer = HTTPBearer(auto_error=False)


@app.middleware("http")
async def request_id(request: Request, call_next):
    rid = request.headers.get("x-request-id") or uuid.uuid4().hex
    request.state.request_id = rid
    response = await call_next(request)
    response.headers["X-Request-Id"] = rid
    return response


@app.exception_handler(HTTPException)
async def error_envelope(request: Request, exc: HTTPException):
    detail = exc.detail if isinstance(exc.detail, dict) else {"code": "ERROR", "message": str(exc.detail)}
    return JSONResponse({"status": "error", "error": detail}, status_code=exc.status_code)


class Caller(BaseModel):
    sub: str
    roles: list[str]


def caller(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> Caller:
    if credentials is None:
        raise HTTPException(401, {"code": "AUTH_ERROR", "message": "missing bearer token"})
    try:
        claims = jwt.decode(credentials.credentials, SECRET, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.PyJWTError as e:
        raise HTTPException(401, {"code": "AUTH_ERROR", "message": str(e)})
    return Caller(sub=claims["sub"], roles=claims.get("roles", []))


def authorize(who: Caller, user_id: str, write: bool) -> None:
    if "admin" in who.roles or who.sub == user_id or (not write and "service" in who.roles):
        return
    raise HTTPException(403, {"code": "FORBIDDEN", "message": "not allowed for this user"})


def audit(conn: sqlite3.Connection, who: Caller, action: str, user_id: str, request: Request) -> None:
    conn.execute(
        "INSERT INTO audit (at_ms, actor, action, user_id, outcome, request_id) VALUES (?, ?, ?, ?, ?, ?)",
        (int(time.time() * 1000), who.sub, action, user_id, "allowed", request.state.request_id),
    )


@app.post("/api/bg/{user_id}/readings", status_code=201)
def write_readings(user_id: UserId, body: BulkIn, request: Request, who: Caller = Depends(caller)):
    authorize(who, user_id, write=True)
    conn = db()
    now = int(time.time() * 1000)
    outcomes = []
    conn.execute("BEGIN IMMEDIATE")
    for r in body.readings:
        d = r.device_info or DeviceIn()
        trend = TRENDS.get((r.trend_direction or "").lower()) if r.trend_direction else None
        cur = conn.execute(
            "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            (user_id, int(r.timestamp.timestamp()), r.glucose_value, trend, r.trend_rate,
             d.device_id, d.serial_number, d.transmitter_id, r.reading_type, r.source.lower(), now, now),
        )
        outcomes.append({"outcome": "inserted" if cur.rowcount == 1 else "duplicate"})
    audit(conn, who, "write_readings", user_id, request)
    conn.execute("COMMIT")
    return {"status": "success", "data": {"results": outcomes}}


def encode_cursor(direction: str, ts: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"d": direction, "ts": ts}).encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[str, int]:
    try:
        c = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return c["d"], int(c["ts"])
    except (ValueError, KeyError, TypeError):
        raise HTTPException(400, {"code": "VALIDATION_ERROR", "message": "invalid cursor"})


@app.get("/api/bg/{user_id}", response_model=PageEnvelope)
def read_range(
    user_id: UserId,
    request: Request,
    who: Caller = Depends(caller),
    start_date: Optional[str] = Query(None, alias="startDate"),
    end_date: Optional[str] = Query(None, alias="endDate"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: Optional[str] = None,
    order: Literal["asc", "desc"] = "asc",
):
    authorize(who, user_id, write=False)
    lo = parse_date("startDate", start_date) if start_date else -(2**62)
    hi = parse_date("endDate", end_date) if end_date else 2**62
    backwards = False
    if cursor:
        direction, x = decode_cursor(cursor)
        backwards = direction == "before"
        if (direction == "after") == (order == "asc"):
            lo = max(lo, x + 1)
        else:
            hi = min(hi, x)
    scan_desc = (order == "desc") != backwards
    conn = db()
    rows = conn.execute(
        "SELECT user_id, ts, glucose_value, trend_direction, trend_rate, device_id, serial_number, "
        "transmitter_id, reading_type, source, version, created_at_ms, updated_at_ms FROM readings "
        f"WHERE user_id = ? AND ts >= ? AND ts < ? ORDER BY ts {'DESC' if scan_desc else 'ASC'} LIMIT ?",
        (user_id, lo, hi, limit + 1),
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    readings = []
    for (uid, ts, value, trend, rate, dev, serial, tx, rtype, source, version, created, updated) in rows:
        device = DeviceInfo(device_id=dev, serial_number=serial, transmitter_id=tx) if (dev or serial or tx) else None
        readings.append(ReadingOut(
            user_id=uid, timestamp=iso_seconds(ts), glucose_value=value, trend_direction=trend,
            trend_rate=rate, device_info=device, reading_type=rtype, source=source, version=version,
            created_at=iso_millis(created), updated_at=iso_millis(updated),
        ))
    has_next, has_prev = (bool(rows), more) if backwards else (more, bool(cursor) and bool(rows))
    next_cursor = encode_cursor("after", rows[-1][1]) if has_next else None
    prev_cursor = encode_cursor("before", rows[0][1]) if has_prev else None

    def link(c: Optional[str]) -> Optional[str]:
        if c is None:
            return None
        return str(request.url.include_query_params(cursor=c))

    audit(conn, who, "read_readings", user_id, request)
    return PageEnvelope(data=ReadingsPage(
        readings=readings,
        pagination=Pagination(next_cursor=next_cursor, prev_cursor=prev_cursor,
                              next=link(next_cursor), prev=link(prev_cursor), limit=limit),
    ))
