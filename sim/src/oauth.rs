//! The OAuth issuer, mirroring auth.openai.com: browser login (`/oauth/authorize`),
//! the token endpoint (`/oauth/token`) with code exchange and rotating refresh tokens,
//! and the device-code login (`/api/accounts/deviceauth/*`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::CLIENT_ID;
use crate::backend::header;
use crate::jwt::{self, Tokens};
use crate::reply::{self, Reply};
use crate::script::{CodePlacement, TokenBehavior};
use crate::state::{DeviceSession, DeviceState, LoginChoice, PendingCode, RefreshState, Shared};

const SCOPE: &str = "openid profile email offline_access";

/// `GET /oauth/authorize`: plays the user's consent and redirects with a code.
/// Who consents comes from the login queue (`POST /__sim/login`), else the first account.
pub(crate) fn authorize(shared: &Shared, request: &Request<Incoming>) -> Reply {
    let query: HashMap<String, String> = request.uri().query().map(parse_form).unwrap_or_default();
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or_default();

    let mut world = shared.world.lock();
    world.recorder.global.authorize += 1;
    let problem = if param("response_type") != "code" {
        Some("response_type must be code")
    } else if param("client_id") != CLIENT_ID {
        Some("unknown client_id")
    } else if param("redirect_uri").is_empty() {
        Some("redirect_uri is required")
    } else if param("code_challenge").is_empty() || param("code_challenge_method") != "S256" {
        Some("PKCE with code_challenge_method=S256 is required")
    } else {
        None
    };
    if let Some(problem) = problem {
        return reply::text(400, problem);
    }

    let redirect_uri = param("redirect_uri").to_string();
    let state = param("state").to_string();
    let choice = match world.login_queue.pop_front() {
        Some(choice) => choice,
        None => match world.first_account_id() {
            Some(id) => LoginChoice::Account(id),
            None => return reply::text(400, "the script has no accounts to log in"),
        },
    };
    let params: Vec<(&str, String)> = match choice {
        LoginChoice::Deny => {
            world.recorder.global.authorize_denied += 1;
            vec![
                ("error", "access_denied".to_string()),
                (
                    "error_description",
                    "The user denied the request".to_string(),
                ),
                ("state", state),
            ]
        }
        LoginChoice::Account(account_id) => {
            let code = format!("ac_sim_{}", jwt::random_urlsafe(24));
            world.codes.insert(
                code.clone(),
                PendingCode {
                    account_id,
                    code_challenge: param("code_challenge").to_string(),
                    redirect_uri: redirect_uri.clone(),
                },
            );
            vec![("code", code), ("state", state)]
        }
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in &params {
        query.append_pair(name, value);
    }
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    reply::redirect(&format!("{redirect_uri}{separator}{}", query.finish()))
}

/// `POST /oauth/token`, form-encoded (pi) or JSON (Codex CLI).
pub(crate) async fn token(shared: Arc<Shared>, request: Request<Incoming>) -> Reply {
    let params = match read_params(request).await {
        Ok(params) => params,
        Err(problem) => return problem.reply(),
    };
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if param("client_id") != CLIENT_ID {
        return oauth_error(401, "invalid_client", "unknown or missing client_id");
    }
    match param("grant_type") {
        "authorization_code" => exchange_code(&shared, &params).await,
        "refresh_token" => refresh(&shared, param("refresh_token")).await,
        _ => oauth_error(400, "unsupported_grant_type", "grant_type is not supported"),
    }
}

async fn exchange_code(shared: &Arc<Shared>, params: &HashMap<String, String>) -> Reply {
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let code = param("code");
    let pending = {
        let mut world = shared.world.lock();
        let pending = world.codes.get(code).cloned();
        match &pending {
            Some(pending) => {
                world
                    .recorder
                    .account(&pending.account_id)
                    .token_authorization_code += 1
            }
            None => world.recorder.global.token_unknown += 1,
        }
        pending
    };
    let Some(pending) = pending else {
        return oauth_error(
            400,
            "invalid_grant",
            "unknown or already used authorization code",
        );
    };
    if let Some(reply) = scripted_failure(shared, &pending.account_id).await {
        return reply;
    }

    let mut world = shared.world.lock();
    // Single use: the code is spent by the first exchange that reaches this point.
    if world.codes.remove(code).is_none() {
        world.recorder.account(&pending.account_id).token_failures += 1;
        return oauth_error(400, "invalid_grant", "authorization code already used");
    }
    let problem = if param("redirect_uri") != pending.redirect_uri {
        Some("redirect_uri does not match the authorization request")
    } else if jwt::pkce_challenge(param("code_verifier")) != pending.code_challenge {
        Some("code_verifier does not match the code_challenge")
    } else {
        None
    };
    if let Some(problem) = problem {
        world.recorder.account(&pending.account_id).token_failures += 1;
        return oauth_error(400, "invalid_grant", problem);
    }
    match world.login(&pending.account_id) {
        Ok(tokens) => token_reply(&tokens, ttl(&world, &pending.account_id)),
        Err(_) => oauth_error(400, "invalid_grant", "the account no longer exists"),
    }
}

async fn refresh(shared: &Arc<Shared>, refresh_token: &str) -> Reply {
    let known = {
        let mut world = shared.world.lock();
        let known = world.refresh_token_state(refresh_token);
        match &known {
            Some((account_id, _)) => world.recorder.account(account_id).token_refresh += 1,
            None => world.recorder.global.token_unknown += 1,
        }
        known
    };
    let Some((account_id, _)) = known else {
        return refresh_failure("refresh_token_invalidated");
    };
    if let Some(reply) = scripted_failure(shared, &account_id).await {
        return reply;
    }

    let mut world = shared.world.lock();
    // Re-read the state: a concurrent refresh may have used the token meanwhile.
    let state = world
        .refresh_token_state(refresh_token)
        .map(|(_, state)| state);
    let failure = match state {
        Some(RefreshState::Current) => match world.rotate(refresh_token) {
            Some(tokens) => return token_reply(&tokens, ttl(&world, &account_id)),
            None => refresh_failure("refresh_token_invalidated"),
        },
        Some(RefreshState::Used) => refresh_failure("refresh_token_reused"),
        Some(RefreshState::Replaced) | None => refresh_failure("refresh_token_invalidated"),
    };
    world.recorder.account(&account_id).token_failures += 1;
    failure
}

/// Pops and applies the account's next token behavior. Returns the reply when the
/// behavior replaces the normal answer; `delayMs` waits and lets the call go on.
async fn scripted_failure(shared: &Arc<Shared>, account_id: &str) -> Option<Reply> {
    let behavior = shared
        .world
        .lock()
        .account_mut(account_id)
        .ok()
        .and_then(|account| account.token_behaviors.pop_front())?;
    let reply = match behavior {
        TokenBehavior::DelayMs { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return None;
        }
        TokenBehavior::Hang => std::future::pending().await,
        TokenBehavior::ServerError { status } => oauth_error(
            status,
            "server_error",
            "dispatch-sim: simulated token endpoint failure",
        ),
        TokenBehavior::Malformed => reply::json_text(200, "{\"access_token\": \"trunc"),
        TokenBehavior::Expired => refresh_failure("refresh_token_expired"),
        TokenBehavior::Invalidated => refresh_failure("refresh_token_invalidated"),
        TokenBehavior::Reused => refresh_failure("refresh_token_reused"),
        TokenBehavior::InvalidGrant => oauth_error(400, "invalid_grant", "invalid grant"),
        TokenBehavior::Exhausted => refresh_failure("refresh_token_exhausted"),
        TokenBehavior::TokenExpired => refresh_failure("token_expired"),
        TokenBehavior::Refuse {
            status,
            code,
            message,
            code_at,
        } => {
            let message = message.unwrap_or_else(|| refusal_message(&code));
            refusal(status, &code, &message, code_at)
        }
    };
    shared
        .world
        .lock()
        .recorder
        .account(account_id)
        .token_failures += 1;
    Some(reply)
}

fn ttl(world: &crate::state::World, account_id: &str) -> u64 {
    world
        .account(account_id)
        .map_or(3600, |a| a.script.access_token_ttl_seconds)
}

fn token_reply(tokens: &Tokens, expires_in: u64) -> Reply {
    reply::json(
        200,
        &json!({
            "access_token": tokens.access,
            "refresh_token": tokens.refresh,
            "id_token": tokens.id_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": SCOPE,
        }),
    )
}

/// A permanent refresh failure: 401 with the code where codex-rs looks for it
/// (`error.code`), plus the flat OAuth fields for clients that read those.
fn refresh_failure(code: &str) -> Reply {
    refusal(401, code, &refusal_message(code), CodePlacement::All)
}

/// A token-endpoint refusal with its code at the place `code_at` names.
fn refusal(status: u16, code: &str, message: &str, code_at: CodePlacement) -> Reply {
    let object = json!({"code": code, "message": message, "type": "invalid_request_error"});
    let body = match code_at {
        CodePlacement::All => json!({"error": object, "error_description": message, "code": code}),
        CodePlacement::ErrorObject => json!({"error": object}),
        CodePlacement::ErrorString => json!({"error": code, "error_description": message}),
        CodePlacement::TopLevel => json!({"code": code, "message": message}),
    };
    reply::json(status, &body)
}

/// The message the issuer sends with a refresh failure code.
fn refusal_message(code: &str) -> String {
    let known = match code {
        "refresh_token_expired" => "Your refresh token has expired. Please try signing in again.",
        "refresh_token_invalidated" => {
            "Your refresh token has been invalidated. Please try signing in again."
        }
        "refresh_token_reused" => {
            "Your refresh token has already been used to generate a new access token. Please try signing in again."
        }
        "refresh_token_exhausted" => {
            "Your refresh token has been exhausted. Please try signing in again."
        }
        "token_expired" => "Provided authentication token is expired. Please try signing in again.",
        other => return format!("simulated token failure: {other}"),
    };
    known.to_string()
}

/// A standard OAuth error body (`{"error": "<code>", "error_description": ...}`).
fn oauth_error(status: u16, code: &str, description: &str) -> Reply {
    reply::json(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

/// `POST /api/accounts/deviceauth/usercode`: starts a device login.
pub(crate) async fn device_user_code(shared: Arc<Shared>, request: Request<Incoming>) -> Reply {
    let params = match read_params(request).await {
        Ok(params) => params,
        Err(problem) => return problem.reply(),
    };
    if params.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return oauth_error(400, "invalid_client", "unknown or missing client_id");
    }
    let mut world = shared.world.lock();
    world.recorder.global.device_user_code += 1;
    let session = DeviceSession {
        device_auth_id: format!("deviceauth_sim_{}", jwt::random_urlsafe(16)),
        user_code: jwt::user_code(),
        polls: 0,
        state: DeviceState::Pending,
    };
    // The real server sends the interval as a string; codex-rs only accepts that.
    let body = json!({
        "device_auth_id": session.device_auth_id,
        "user_code": session.user_code,
        "interval": world.device_script.interval_seconds.to_string(),
    });
    world.devices.push(session);
    reply::json(200, &body)
}

/// `POST /api/accounts/deviceauth/token`: 403 while pending (codex-rs and pi keep
/// polling on 403 and 404), then the authorization code with its PKCE pair.
pub(crate) async fn device_poll(shared: Arc<Shared>, request: Request<Incoming>) -> Reply {
    let params = match read_params(request).await {
        Ok(params) => params,
        Err(problem) => return problem.reply(),
    };
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let mut world = shared.world.lock();
    world.recorder.global.device_poll += 1;
    let auto_approve = world.device_script.auto_approve_after_polls;
    let auto_account = world
        .device_script
        .account_id
        .clone()
        .or_else(|| world.first_account_id());

    let Some(index) = world.devices.iter().position(|d| {
        d.device_auth_id == param("device_auth_id") && d.user_code == param("user_code")
    }) else {
        return device_error(
            400,
            "invalid_device_auth",
            "unknown device_auth_id or user_code",
        );
    };
    let session = &mut world.devices[index];
    session.polls += 1;
    if session.state == DeviceState::Pending
        && let (Some(after), Some(account_id)) = (auto_approve, auto_account)
        && session.polls >= after
    {
        session.state = DeviceState::Approved(account_id);
    }
    match session.state.clone() {
        DeviceState::Pending => device_error(
            403,
            "deviceauth_authorization_pending",
            "The user has not approved this device yet.",
        ),
        DeviceState::Denied => {
            world.devices.remove(index);
            device_error(400, "access_denied", "The user denied the device login.")
        }
        DeviceState::Approved(account_id) => {
            world.devices.remove(index);
            let verifier = jwt::random_urlsafe(32);
            let challenge = jwt::pkce_challenge(&verifier);
            let code = format!("ac_sim_{}", jwt::random_urlsafe(24));
            world.codes.insert(
                code.clone(),
                PendingCode {
                    account_id,
                    code_challenge: challenge.clone(),
                    redirect_uri: format!("{}/deviceauth/callback", shared.base_url),
                },
            );
            reply::json(
                200,
                &json!({"authorization_code": code, "code_challenge": challenge, "code_verifier": verifier}),
            )
        }
    }
}

fn device_error(status: u16, code: &str, message: &str) -> Reply {
    reply::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// Why a token or device call's body could not be read.
enum BadBody {
    Unreadable,
    NotJson,
    NotAnObject,
}

impl BadBody {
    fn reply(self) -> Reply {
        match self {
            BadBody::Unreadable => reply::text(400, "could not read the request body"),
            BadBody::NotJson => oauth_error(400, "invalid_request", "the body is not valid JSON"),
            BadBody::NotAnObject => {
                oauth_error(400, "invalid_request", "the body must be a JSON object")
            }
        }
    }
}

/// The body of a token or device call as name -> value, from JSON or a form.
async fn read_params(request: Request<Incoming>) -> Result<HashMap<String, String>, BadBody> {
    let is_json = header(request.headers(), "content-type")
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|_| BadBody::Unreadable)?
        .to_bytes();
    if !is_json {
        return Ok(parse_form(&String::from_utf8_lossy(&body)));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|_| BadBody::NotJson)?;
    let Value::Object(object) = value else {
        return Err(BadBody::NotAnObject);
    };
    Ok(object
        .into_iter()
        .filter_map(|(name, value)| match value {
            Value::String(text) => Some((name, text)),
            Value::Number(number) => Some((name, number.to_string())),
            _ => None,
        })
        .collect())
}

pub(crate) fn parse_form(text: &str) -> HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}
