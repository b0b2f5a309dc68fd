//! What the authorization server sent back to the browser login's redirect URI, read from
//! the callback's query or from whatever the user pasted.

use url::Url;

use crate::domain::text;
use crate::error::{Error, ErrorKind};

/// What the authorization server sent to the redirect URI.
#[derive(Clone, PartialEq, Eq)]
pub enum Redirect {
    Code {
        code: String,
        state: String,
    },
    /// The server refused, e.g. `access_denied` when the user declined.
    Refused {
        error: String,
        description: Option<String>,
        state: Option<String>,
    },
}

impl std::fmt::Debug for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code { state, .. } => f
                .debug_struct("Code")
                .field("code", &"<redacted>")
                .field("state", state)
                .finish(),
            Self::Refused {
                error,
                description,
                state,
            } => f
                .debug_struct("Refused")
                .field("error", error)
                .field("description", description)
                .field("state", state)
                .finish(),
        }
    }
}

/// Reads what a user pasted: the whole redirect URL, its query string (with or without `?`),
/// or `code#state`.
pub fn parse_paste(text: &str) -> Result<Redirect, Error> {
    let text = text.trim().trim_matches(|c| c == '"' || c == '\'');
    let not_a_redirect =
        |why: text::PasteProblem| Error::new(ErrorKind::Paste, text::not_a_redirect(why));
    if text.is_empty() {
        return Err(not_a_redirect(text::PasteProblem::Empty));
    }
    let query = if let Ok(url) = Url::parse(text) {
        url.query().unwrap_or_default().to_owned()
    } else if text.contains('=') {
        text.trim_start_matches('?').to_owned()
    } else if let Some((code, state)) = text.split_once('#') {
        if code.is_empty() || state.is_empty() {
            return Err(not_a_redirect(text::PasteProblem::EmptyPart));
        }
        return Ok(Redirect::Code {
            code: code.to_owned(),
            state: state.to_owned(),
        });
    } else {
        return Err(not_a_redirect(text::PasteProblem::NotARedirect));
    };
    match from_query(&query) {
        Some(redirect) => Ok(redirect),
        None if query_has(&query, "code") => Err(not_a_redirect(text::PasteProblem::NoState)),
        None => Err(not_a_redirect(text::PasteProblem::NoCode)),
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn query_has(query: &str, name: &str) -> bool {
    query_pairs(query)
        .iter()
        .any(|(n, v)| n == name && !v.is_empty())
}

/// The answer in a redirect's query string, if it holds one.
pub fn from_query(query: &str) -> Option<Redirect> {
    let pairs = query_pairs(query);
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    if let Some(error) = get("error") {
        return Some(Redirect::Refused {
            error,
            description: get("error_description"),
            state: get("state"),
        });
    }
    Some(Redirect::Code {
        code: get("code")?,
        state: get("state")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(code: &str, state: &str) -> Redirect {
        Redirect::Code {
            code: code.into(),
            state: state.into(),
        }
    }

    #[test]
    fn every_paste_form_is_understood() {
        let forms = [
            "http://localhost:1455/auth/callback?code=ac_1&state=st_1",
            "  http://localhost:1455/auth/callback?state=st_1&code=ac_1&scope=x\n",
            "\"http://localhost:1455/auth/callback?code=ac_1&state=st_1\"",
            "code=ac_1&state=st_1",
            "?code=ac_1&state=st_1",
            "ac_1#st_1",
        ];
        for form in forms {
            assert_eq!(parse_paste(form).unwrap(), code("ac_1", "st_1"), "{form:?}");
        }
        assert_eq!(
            parse_paste("code=a%2Bb&state=s%20t").unwrap(),
            code("a+b", "s t"),
            "values are percent-decoded"
        );
    }

    #[test]
    fn a_pasted_refusal_is_an_answer() {
        let pasted = "http://localhost:1455/auth/callback?error=access_denied&error_description=The+user+denied&state=st_1";
        assert_eq!(
            parse_paste(pasted).unwrap(),
            Redirect::Refused {
                error: "access_denied".into(),
                description: Some("The user denied".into()),
                state: Some("st_1".into()),
            }
        );
    }

    #[test]
    fn pastes_that_are_no_answer_are_refused_with_the_paste_kind() {
        for bad in [
            "",
            "   ",
            "hello",
            "http://localhost:1455/auth/callback",
            "http://localhost:1455/auth/callback?state=st_1",
            "code=ac_1",
            "#st_1",
            "ac_1#",
        ] {
            let error = parse_paste(bad).unwrap_err();
            assert_eq!(error.kind, ErrorKind::Paste, "{bad:?}");
        }
        let no_state = parse_paste("code=ac_secret_1").unwrap_err();
        assert!(
            no_state.message.contains("no state"),
            "{}",
            no_state.message
        );
        assert!(!no_state.message.contains("ac_secret_1"));
    }

    #[test]
    fn a_redirect_debug_never_shows_the_code() {
        let shown = format!("{:?}", code("ac_secret_42", "st_1"));
        assert!(!shown.contains("ac_secret_42"), "{shown}");
        assert!(shown.contains("st_1"));
    }
}
