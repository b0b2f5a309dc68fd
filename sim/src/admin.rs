//! The admin API under `/__sim/`, for Node tests and the demo: the same controls the
//! Rust `Simulator` offers, as JSON over HTTP.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::limits::{LimitsError, LimitsUpdate};
use crate::reply::{self, Reply};
use crate::script::{Behavior, EncryptedContentCheck, TokenBehavior, Usage};
use crate::state::{ApproveError, Shared, UnknownAccount};

/// Routes one `/__sim/...` request.
pub(crate) async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request
        .uri()
        .path()
        .trim_start_matches("/__sim/")
        .to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return reply::text(400, "could not read the request body"),
    };

    match (method, segments.as_slice()) {
        (Method::GET, ["stats"]) => {
            match serde_json::to_value(shared.world.lock().recorder.snapshot()) {
                Ok(stats) => reply::json(200, &stats),
                Err(e) => reply::text(500, &format!("could not serialize stats: {e}")),
            }
        }
        (Method::POST, ["reset-stats"]) => {
            shared.world.lock().recorder.reset();
            done()
        }
        (Method::GET, ["tokens"]) => {
            let world = shared.world.lock();
            let all: serde_json::Map<String, Value> = world
                .account_ids()
                .into_iter()
                .filter_map(|id| {
                    let tokens = serde_json::to_value(&world.account(&id)?.current).ok()?;
                    Some((id, tokens))
                })
                .collect();
            reply::json(200, &Value::Object(all))
        }
        (Method::GET, ["tokens", id]) => {
            let world = shared.world.lock();
            match world.account(id).map(|a| serde_json::to_value(&a.current)) {
                Some(Ok(tokens)) => reply::json(200, &tokens),
                _ => unknown(&UnknownAccount(id.to_string())),
            }
        }
        (Method::POST, ["behaviors", id]) => match parse::<BehaviorUpdate>(&body) {
            Ok(update) => {
                let mut world = shared.world.lock();
                match world.account_mut(id) {
                    Ok(account) => {
                        let (queue, default) = update.into_parts();
                        if let Some(queue) = queue {
                            account.behaviors = queue.into();
                        }
                        if let Some(default) = default {
                            account.default = default;
                        }
                        done()
                    }
                    Err(e) => unknown(&e),
                }
            }
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["behaviors", id, "push"]) => match parse::<Behavior>(&body) {
            Ok(behavior) => match shared.world.lock().account_mut(id) {
                Ok(account) => {
                    account.behaviors.push_back(behavior);
                    done()
                }
                Err(e) => unknown(&e),
            },
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["token-behaviors", id]) => match parse::<Vec<TokenBehavior>>(&body) {
            Ok(queue) => match shared.world.lock().account_mut(id) {
                Ok(account) => {
                    account.token_behaviors = queue.into();
                    done()
                }
                Err(e) => unknown(&e),
            },
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["usage", id]) => match parse::<Usage>(&body) {
            Ok(usage) => match shared.world.lock().set_usage(id, &usage) {
                Ok(()) => done(),
                Err(e) => unknown(&e),
            },
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["usage", id, family]) => match parse::<Usage>(&body) {
            Ok(usage) => limits_done(shared.world.lock().set_family_usage(id, family, &usage)),
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["limits", id]) => match parse::<LimitsUpdate>(&body) {
            Ok(update) => limits_done(shared.world.lock().update_limits(id, update)),
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["revoke", id]) => {
            let options: RevokeRequest = match parse(&body) {
                Ok(options) => options,
                Err(message) => return bad_request(&message),
            };
            let mut world = shared.world.lock();
            let mut result = world.revoke_access_tokens(id);
            if result.is_ok() && options.refresh {
                result = world.revoke_refresh_token(id);
            }
            match result {
                Ok(()) => done(),
                Err(e) => unknown(&e),
            }
        }
        (Method::POST, ["deactivate", id]) => match parse::<DeactivateRequest>(&body) {
            Ok(request) => match shared.world.lock().set_deactivated(id, Some(&request.code)) {
                Ok(()) => done(),
                Err(e) => unknown(&e),
            },
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["reactivate", id]) => match shared.world.lock().set_deactivated(id, None) {
            Ok(()) => done(),
            Err(e) => unknown(&e),
        },
        (Method::POST, ["encrypted-content", id]) => match parse::<EncryptedContentCheck>(&body) {
            Ok(check) => match shared.world.lock().set_encrypted_content_check(id, check) {
                Ok(()) => done(),
                Err(e) => unknown(&e),
            },
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["mint", id]) => match parse::<MintRequest>(&body) {
            Ok(request) => {
                if let Err(e) = shared.world.lock().account_mut(id) {
                    return unknown(&e);
                }
                let encrypted_content = shared.content_key.mint(id, &request.item_id);
                reply::json(200, &json!({"encryptedContent": encrypted_content}))
            }
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["login"]) => match parse::<LoginRequest>(&body) {
            Ok(login) => {
                let account = if login.deny {
                    None
                } else {
                    match login
                        .account_id
                        .or_else(|| shared.world.lock().first_account_id())
                    {
                        Some(id) => Some(id),
                        None => return reply::text(400, "the script has no accounts"),
                    }
                };
                match shared.world.lock().queue_login(account.as_deref()) {
                    Ok(()) => done(),
                    Err(e) => unknown(&e),
                }
            }
            Err(message) => bad_request(&message),
        },
        (Method::POST, ["device", "approve"]) => match parse::<ApproveRequest>(&body) {
            Ok(approve) => {
                let result = shared.world.lock().approve_device(
                    approve.user_code.as_deref(),
                    approve.account_id.as_deref(),
                    approve.deny,
                );
                match result {
                    Ok(user_code) => reply::json(200, &json!({"ok": true, "userCode": user_code})),
                    Err(ApproveError::UnknownAccount(e)) => unknown(&e),
                    Err(e) => reply::json(404, &json!({"ok": false, "error": e.to_string()})),
                }
            }
            Err(message) => bad_request(&message),
        },
        _ => reply::not_found(),
    }
}

/// `POST /__sim/behaviors/<id>` takes either a bare array (the new queue) or
/// `{"behaviors": [...], "default": {...}}` with either part optional.
#[derive(Deserialize)]
#[serde(untagged)]
enum BehaviorUpdate {
    Queue(Vec<Behavior>),
    Both {
        #[serde(default)]
        behaviors: Option<Vec<Behavior>>,
        #[serde(default)]
        default: Option<Behavior>,
    },
}

impl BehaviorUpdate {
    fn into_parts(self) -> (Option<Vec<Behavior>>, Option<Behavior>) {
        match self {
            BehaviorUpdate::Queue(queue) => (Some(queue), None),
            BehaviorUpdate::Both { behaviors, default } => (behaviors, default),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeRequest {
    #[serde(default)]
    refresh: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeactivateRequest {
    #[serde(default = "default_deactivated_code")]
    code: String,
}

fn default_deactivated_code() -> String {
    "account_deactivated".to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MintRequest {
    item_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginRequest {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    deny: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApproveRequest {
    #[serde(default)]
    user_code: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    deny: bool,
}

/// Parses a JSON body; an empty body reads as `{}` so that calls whose fields are all
/// optional (`login`, `device/approve`, `revoke`) work without one.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))
}

fn bad_request(message: &str) -> Reply {
    reply::json(400, &json!({"ok": false, "error": message}))
}

fn done() -> Reply {
    reply::json(200, &json!({"ok": true}))
}

fn unknown(error: &UnknownAccount) -> Reply {
    reply::json(404, &json!({"ok": false, "error": error.to_string()}))
}

fn limits_done(result: Result<(), LimitsError>) -> Reply {
    match result {
        Ok(()) => done(),
        Err(LimitsError::UnknownAccount(e)) => unknown(&e),
        Err(LimitsError::InvalidFamily(message)) => bad_request(&message),
    }
}
