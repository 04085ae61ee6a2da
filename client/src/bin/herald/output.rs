//! How results reach stdout and failures reach stderr: lines for people by default, JSON for
//! scripts with `--json`.
//!
//! Every result type is a small CLI-local struct that derives `Serialize` and knows its human
//! form, so the two formats cannot drift apart: both come from the same value. The JSON shapes
//! are part of the CLI's interface (docs/SDK.md, "The herald CLI"): fields are snake_case, ids
//! and counts are numbers as the SDK has them, enums are lowercase strings, and a field that
//! may be absent is present as `null` rather than missing.

use std::io::Write;

use anyhow::{Context, Result};
use herald_client::ClientError;
use serde::Serialize;

/// A command's result, printable either way.
pub(crate) trait Output: Serialize {
    /// The human-readable form: one or more lines without the final newline, or nothing.
    fn human(&self) -> String;
}

/// Where results go and in which format; chosen once, by the global `--json` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Printer {
    json: bool,
}

impl Printer {
    pub(crate) fn new(json: bool) -> Self {
        Printer { json }
    }

    /// Whether results are printed as JSON.
    pub(crate) fn json(self) -> bool {
        self.json
    }

    /// Prints one result: its JSON as one line, or its human lines. Flushed at once, so a
    /// stream read through a pipe sees each item as it happens.
    ///
    /// # Errors
    /// When stdout is closed (the reader of a pipe went away) or the value cannot be encoded.
    pub(crate) fn print(self, item: &impl Output) -> Result<()> {
        let text = if self.json { serde_json::to_string(item).context("encoding JSON")? } else { item.human() };
        if text.is_empty() {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{text}").and_then(|()| stdout.flush()).context("writing to stdout")
    }

    /// Prints a failure to stderr: `{"error": {"code", "message"}}` with `--json`, otherwise
    /// anyhow's report (the message, then each cause).
    pub(crate) fn fail(self, error: &anyhow::Error) {
        if self.json {
            eprintln!("{}", error_json(error_code(error), &format!("{error:#}")));
        } else {
            eprintln!("Error: {error:?}");
        }
    }
}

/// The error object of `--json`: `{"error":{"code":"NOT_FOUND","message":"..."}}`.
pub(crate) fn error_json(code: &str, message: &str) -> String {
    #[derive(Serialize)]
    struct Detail<'a> {
        code: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Failure<'a> {
        error: Detail<'a>,
    }
    let failure = Failure { error: Detail { code, message } };
    // Two string fields always serialize; the fallback keeps the promise of one JSON line anyway.
    serde_json::to_string(&failure).unwrap_or_else(|_| r#"{"error":{"code":"LOCAL","message":""}}"#.to_owned())
}

/// A stable name for what went wrong: the broker's error code (docs/PROTOCOL.md's table) when the
/// broker gave one, otherwise a CLI code for the SDK error's kind, and `LOCAL` for failures that
/// never reached the SDK (a missing token, an unreadable certificate file, a closed stdout).
pub(crate) fn error_code(error: &anyhow::Error) -> &'static str {
    let Some(client) = error.chain().find_map(|cause| cause.downcast_ref::<ClientError>()) else {
        return "LOCAL";
    };
    if let Some(code) = client.code() {
        return code.name().unwrap_or("UNKNOWN_ERROR");
    }
    match client {
        ClientError::Config(_) => "CONFIG",
        ClientError::Endpoint(_) => "ENDPOINT",
        ClientError::Connect(_) => "CONNECT",
        ClientError::Connection(_) => "CONNECTION",
        ClientError::InvalidArgument(_) => "INVALID_ARGUMENT",
        ClientError::Protocol(_) => "PROTOCOL",
        ClientError::Timeout(_) => "TIMEOUT",
        ClientError::ClientClosed => "CLIENT_CLOSED",
        ClientError::EndToEnd(_) => "END_TO_END",
        ClientError::NotEndToEnd { .. } => "NOT_END_TO_END",
        // Those carry a broker code and were answered above.
        ClientError::Refused { .. } | ClientError::Request { .. } | ClientError::Closed { .. } => "UNKNOWN_ERROR",
    }
}

/// A lowercase word for a protobuf enum value, from its name without the enum's prefix
/// (`CHECK_IN_KIND_FIELD_VISIT` → `field_visit`); `unknown(N)` for a value this client does not
/// know (`name` is `None`).
pub(crate) fn enum_word(value: i32, name: Option<&str>, prefix: &str) -> String {
    match name {
        Some(name) => name.strip_prefix(prefix).unwrap_or(name).to_lowercase(),
        None => format!("unknown({value})"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use herald_client::ErrorCode;

    use super::*;

    #[test]
    fn broker_codes_keep_their_names_and_the_rest_say_their_kind() {
        let refused = ClientError::Request { code: ErrorCode::NOT_FOUND, message: "no".into(), retry_after: None };
        let error = anyhow::Error::from(refused).context("sending to conversation 5");
        assert_eq!(error_code(&error), "NOT_FOUND");
        let error = anyhow::Error::from(ClientError::Timeout(Duration::from_secs(1))).context("ping");
        assert_eq!(error_code(&error), "TIMEOUT");
        assert_eq!(error_code(&anyhow::anyhow!("no token")), "LOCAL");
        let unknown = ClientError::Closed { code: ErrorCode::from_u32(0xffff), reason: String::new() };
        assert_eq!(error_code(&unknown.into()), "UNKNOWN_ERROR");
    }

    #[test]
    fn the_error_object_is_one_json_line() -> Result<()> {
        let line = error_json("NOT_FOUND", "sending: \"x\"\nfailed");
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line)?;
        assert_eq!(value["error"]["code"], "NOT_FOUND");
        assert_eq!(value["error"]["message"], "sending: \"x\"\nfailed");
        Ok(())
    }

    #[test]
    fn enum_words_drop_the_prefix() {
        assert_eq!(enum_word(3, Some("CHECK_IN_KIND_FIELD_VISIT"), "CHECK_IN_KIND_"), "field_visit");
        assert_eq!(enum_word(9, None, "CHECK_IN_KIND_"), "unknown(9)");
    }
}
