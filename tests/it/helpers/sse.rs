//! A Server-Sent Events reader over a response body, for the live stream's
//! tests: frames are awaited (bounded by `SSE_WAIT`), never slept for.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

/// How long a frame may take: events follow a commit within milliseconds (the
/// relay is woken by the commit); this bound is for a loaded CI machine.
pub const SSE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Event {
        id: String,
        event: String,
        data: Value,
    },
    Comment(String),
}

/// A Server-Sent Events reader over a response body.
pub struct SseReader {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "stream opens");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next frame (an event, or a comment line).
    pub async fn frame(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data, mut comment) = (None, None, None, None);
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        comment = Some(c.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(": ") {
                        match field {
                            "id" => id = Some(value.to_owned()),
                            "event" => event = Some(value.to_owned()),
                            "data" => data = Some(serde_json::from_str(value).unwrap()),
                            other => panic!("unexpected field {other}"),
                        }
                    }
                }
                return match (id, event, data, comment) {
                    (Some(id), Some(event), Some(data), _) => Frame::Event { id, event, data },
                    (None, None, None, Some(c)) => Frame::Comment(c),
                    _ => panic!("malformed frame {block:?}"),
                };
            }
            let chunk = tokio::time::timeout(SSE_WAIT, self.body.next())
                .await
                .expect("a frame within the wait")
                .expect("the stream stays open")
                .expect("body chunk");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, skipping keep-alives: (event, id, data).
    pub async fn event(&mut self) -> (String, String, Value) {
        loop {
            if let Frame::Event { id, event, data } = self.frame().await {
                assert!(!id.is_empty());
                return (event, id, data);
            }
        }
    }

    /// Events up to and including the reading at `marker` (a reading posted
    /// last, so that everything before it has arrived).
    pub async fn until_reading(&mut self, marker: DateTime<Utc>) -> Vec<(String, String, Value)> {
        let mut got = Vec::new();
        loop {
            let e = self.event().await;
            let done = e.0 == "reading" && e.2["timestamp"] == stamp(marker);
            got.push(e);
            if done {
                return got;
            }
        }
    }
}

pub fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
