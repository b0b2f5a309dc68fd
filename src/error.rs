//! Expected failures as values: a kind a program can branch on, a message a user can act on, and
//! the underlying cause kept for the chain.
//!
//! Messages never contain secrets: tokens are not formatted into them anywhere in the crate, and
//! causes come from I/O, JSON and HTTP errors, which carry no request headers or bodies.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad configuration (an environment override, no home directory).
    Config,
    /// The accounts file exists but cannot be understood; it is left untouched.
    StoreUnreadable,
    /// The accounts file was written by a newer pi-dispatch; it is left untouched.
    StoreTooNew,
    /// Reading or writing the accounts file failed at the OS level.
    StoreIo,
    /// The file or its folder is a link or someone else's: refused before any read or write.
    StoreUnsafe,
    /// The proxy could not start.
    Proxy,
    /// Getting or refreshing a token failed.
    Auth,
    /// Fetching an account's usage failed.
    Usage,
    /// A login did not complete: consent denied, a foreign answer, a refused code exchange.
    Login,
    /// The user cancelled a login.
    LoginCancelled,
    /// A login got no answer in time.
    LoginTimedOut,
    /// Pasted text is not a redirect URL; the login goes on and takes another paste.
    Paste,
    /// A label is malformed, unknown, or belongs to another account.
    Label,
    /// The account cannot serve now (benched, spent, logged out, disabled).
    Unavailable,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::StoreUnreadable => "store_unreadable",
            Self::StoreTooNew => "store_too_new",
            Self::StoreIo => "store_io",
            Self::StoreUnsafe => "store_unsafe",
            Self::Proxy => "proxy",
            Self::Auth => "auth",
            Self::Usage => "usage",
            Self::Login => "login",
            Self::LoginCancelled => "login_cancelled",
            Self::LoginTimedOut => "login_timed_out",
            Self::Paste => "paste",
            Self::Label => "label",
            Self::Unavailable => "unavailable",
        }
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    source: Option<Cause>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl Into<Cause>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The message followed by every cause, for a user who needs the whole story in one line.
    pub fn chain(&self) -> String {
        chain(self)
    }
}

/// Any error and its causes as one line: `outer: cause: root cause`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// What is wrong with a JSON document, without quoting it. serde's messages repeat the offending
/// value ("invalid type: string \"rt_…\""), and in the accounts file or a token answer that
/// value can be a token.
pub fn json_problem(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let message = error.to_string();
    match error.classify() {
        // Syntax messages name characters and positions, never values.
        Category::Syntax | Category::Eof | Category::Io => message,
        Category::Data => {
            let what = [
                ("missing field", None),
                ("duplicate field", None),
                ("invalid type", Some("a value of the wrong type")),
                ("invalid length", Some("a list of the wrong length")),
                (
                    "unknown variant",
                    Some("a value that is not one of the allowed ones"),
                ),
                ("unknown field", Some("an unexpected field")),
            ]
            .into_iter()
            .find(|(prefix, _)| message.starts_with(prefix));
            match what {
                // Field names come from our own schema: safe and the most useful part.
                Some((_, None)) => message,
                Some((_, Some(plain))) => plain.to_owned(),
                None => "a value that is not allowed".to_owned(),
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_every_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let err = Error::new(ErrorKind::StoreIo, "cannot write /x/dispatch.json").with_source(io);
        assert_eq!(err.chain(), "cannot write /x/dispatch.json: denied");
        assert_eq!(err.kind.as_str(), "store_io");
    }

    #[test]
    fn json_problems_never_quote_the_document() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Shape {
            number: u64,
            kind: Kind,
        }
        #[derive(Debug, serde::Deserialize)]
        enum Kind {
            A,
        }
        let cases = [
            (r#"{"number":"sentinel-1","kind":"A"}"#, "wrong type"),
            (
                r#"{"number":1,"kind":"sentinel-2"}"#,
                "not one of the allowed",
            ),
            (r#"{"number":1}"#, "missing field `kind`"),
            (r#"{"number":"sentinel-3"#, "EOF"),
            (r#"{"number":sentinel-4}"#, "expected value"),
        ];
        for (text, expected) in cases {
            let error = serde_json::from_str::<Shape>(text).unwrap_err();
            let problem = json_problem(&error);
            assert!(problem.contains(expected), "{text}: {problem}");
            assert!(!problem.contains("sentinel"), "{text}: {problem}");
        }
    }
}
