//! Server-sent events (`text/event-stream`) for the follow routes: a client
//! that sends `Accept: text/event-stream` gets each log line or event as one
//! SSE message (events carry their id, so `Last-Event-ID` resumes); other
//! clients keep the plain-text and NDJSON streams.

use axum::http::{HeaderMap, header};

/// The content type of an SSE stream.
pub const CONTENT_TYPE: &str = "text/event-stream";

/// Whether the client asked for server-sent events.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == CONTENT_TYPE)
        })
}

/// The event id a reconnecting `EventSource` resumes after (`Last-Event-ID`).
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Text made of lines as SSE messages, one per non-empty line.
pub fn lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines().filter(|l| !l.is_empty()) {
        out.push_str("data: ");
        out.push_str(line);
        out.push_str("\n\n");
    }
    out
}

/// One message with an id (`json` is one line).
pub fn message(id: u64, json: &str) -> String {
    format!("id: {id}\ndata: {}\n\n", json.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_lists_are_read_and_messages_framed() {
        let mut headers = HeaderMap::new();
        assert!(!wanted(&headers));
        headers.insert(
            header::ACCEPT,
            "application/json, text/event-stream;q=0.9"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert!(wanted(&headers));
        headers.insert(
            "last-event-id",
            " 42 ".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(last_event_id(&headers), Some(42));
        assert_eq!(lines("a\n\nb\n"), "data: a\n\ndata: b\n\n");
        assert_eq!(message(7, "{\"x\":1}\n"), "id: 7\ndata: {\"x\":1}\n\n");
    }
}
