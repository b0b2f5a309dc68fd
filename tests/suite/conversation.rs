//! A conversation's reasoning is bound to the account that minted it: a session keeps its
//! account across processes, a request that moves drops only the other account's ciphertext,
//! and a refusal the proxy could not foresee is recovered once. Against the simulator, whose
//! replies carry a reasoning item only the minting account can verify.

use std::sync::Arc;

use super::common;
use super::common::{Rig, rig};
use dispatch_sim::{Behavior, EncryptedContentCheck, Script, Usage};
use pi_dispatch::{Context, Endpoints, Proxy};
use reqwest::Url;
use serde_json::{Value, json};

const SESSION: &str = "session-123";

/// The reasoning item of a reply, as pi keeps it and replays it.
fn reasoning_item(reply: &str) -> Value {
    reply
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .find(|event| {
            event["type"] == "response.output_item.done" && event["item"]["type"] == "reasoning"
        })
        .map(|event| event["item"].clone())
        .expect("the reply carries a reasoning item")
}

/// A turn's body: the conversation so far and a new user message.
fn turn(history: &[Value], prompt: &str) -> Vec<u8> {
    let mut input = vec![json!({"type": "message", "role": "developer", "content": "be brief"})];
    input.extend(history.iter().cloned());
    input.push(json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}));
    serde_json::to_vec(&json!({
        "model": "gpt-test", "store": false, "stream": true,
        "include": ["reasoning.encrypted_content"], "input": input,
    }))
    .unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder =
        ruzstd::encoding::FrameCompressor::new(ruzstd::encoding::CompressionLevel::Fastest);
    encoder.set_source(bytes);
    encoder.set_drain(&mut out);
    encoder.compress();
    out
}

async fn send(rig: &Rig, body: Vec<u8>, zstd_encoded: bool) -> (u16, String) {
    let mut request = rig.pi_request_in(SESSION);
    request = if zstd_encoded {
        request.header("content-encoding", "zstd").body(zstd(&body))
    } else {
        request.body(body)
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, common::show(response.text().await.unwrap()))
}

fn refused(rig: &Rig) -> u64 {
    ["acct-a", "acct-b", "acct-c"]
        .iter()
        .map(|id| rig.sim.stats().account(id).encrypted_content_refused)
        .sum()
}

/// Turn 1 served by acct-a, and the history pi would replay on turn 2.
async fn first_turn(rig: &Rig) -> Vec<Value> {
    let (_, reply) = send(rig, turn(&[], "hello"), false).await;
    assert!(reply.contains("hello from acct-a"), "{reply}");
    vec![
        json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}),
        reasoning_item(&reply),
        json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello from acct-a"}]}),
    ]
}

#[tokio::test]
async fn a_request_that_stays_on_its_account_is_forwarded_byte_for_byte() {
    for zstd_encoded in [false, true] {
        let rig = rig(Script::default_accounts(2)).await;
        let history = first_turn(&rig).await;
        let body = turn(&history, "and now?");
        let (status, reply) = send(&rig, body.clone(), zstd_encoded).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply.contains("hello from acct-a"), "{reply}");
        let last = rig.sim.requests().pop().unwrap();
        let sent = if zstd_encoded { zstd(&body) } else { body };
        assert!(last.raw_body.as_ref() == sent.as_slice(), "byte for byte");
        assert_eq!(
            last.content_encoding.as_deref(),
            zstd_encoded.then_some("zstd")
        );
        assert_eq!(refused(&rig), 0);
    }
}

#[tokio::test]
async fn a_moved_request_reaches_the_new_account_without_foreign_ciphertext() {
    for zstd_encoded in [false, true] {
        let rig = rig(Script::default_accounts(2)).await;
        let history = first_turn(&rig).await;
        rig.sim
            .set_behaviors("acct-a", vec![Behavior::usage_limit(3600)])
            .unwrap();
        let body = turn(&history, "and now?");
        let (status, reply) = send(&rig, body.clone(), zstd_encoded).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply.contains("hello from acct-b"), "{reply}");
        assert_eq!(refused(&rig), 0, "acct-b never saw acct-a's ciphertext");
        let moved = rig.sim.requests().pop().unwrap();
        assert_eq!(moved.account_id.as_deref(), Some("acct-b"));
        assert_eq!(moved.content_encoding, None, "sent uncompressed");
        let mut expected: Value = serde_json::from_slice(&body).unwrap();
        expected["input"]
            .as_array_mut()
            .unwrap()
            .retain(|item| item["type"] != "reasoning");
        assert_eq!(
            moved.body_json().unwrap(),
            expected,
            "every other item equal"
        );
    }
}

#[tokio::test]
async fn a_rotation_on_turn_three_is_answered_with_no_refusal() {
    let rig = rig(Script::default_accounts(2)).await;
    let mut history = first_turn(&rig).await;
    let (_, second) = send(&rig, turn(&history, "two"), false).await;
    assert!(second.contains("hello from acct-a"), "{second}");
    history.push(json!({"type": "message", "role": "user", "content": "two"}));
    history.push(reasoning_item(&second));
    rig.sim
        .set_behaviors("acct-a", vec![Behavior::usage_limit(3600)])
        .unwrap();
    let (status, third) = send(&rig, turn(&history, "three"), false).await;
    assert_eq!(status, 200);
    assert!(third.contains("hello from acct-b"), "{third}");
    assert_eq!(refused(&rig), 0);
    // Turn 4 stays on acct-b: pi still replays acct-a's items, which go, and acct-b's own,
    // which stay.
    let own = reasoning_item(&third);
    history.push(own.clone());
    let (_, fourth) = send(&rig, turn(&history, "four"), false).await;
    assert!(fourth.contains("hello from acct-b"), "{fourth}");
    let sent = rig.sim.requests().pop().unwrap().body_json().unwrap();
    let reasoning: Vec<&Value> = sent["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item["type"] == "reasoning")
        .collect();
    assert_eq!(
        reasoning,
        [&own],
        "only acct-b's own reasoning is replayed to it"
    );
    assert_eq!(refused(&rig), 0);
}

#[tokio::test]
async fn an_unforeseen_refusal_is_stripped_and_retried_exactly_once_in_both_shapes() {
    for null_code in [false, true] {
        let mut script = Script::default_accounts(2);
        script.accounts[0] =
            script.accounts[0]
                .clone()
                .with_encrypted_content(EncryptedContentCheck {
                    verify: true,
                    null_code,
                });
        let rig = rig(script).await;
        // The session is acct-a's, but its history holds acct-b's reasoning (begun elsewhere).
        let _ = first_turn(&rig).await;
        let foreign = json!({"type": "reasoning", "id": "rs_elsewhere", "summary": [],
            "encrypted_content": rig.sim.mint_encrypted_content("acct-b", "rs_elsewhere").unwrap()});
        let (status, reply) = send(&rig, turn(&[foreign], "go on"), false).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply.contains("hello from acct-a"), "{reply}");
        let stats = rig.sim.stats();
        assert_eq!(stats.account("acct-a").encrypted_content_refused, 1);
        assert_eq!(
            stats.account("acct-a").responses,
            3,
            "turn 1, refused, retried"
        );
        assert_eq!(
            stats.account("acct-b").responses,
            0,
            "nothing benched or moved"
        );
        assert!(rig.ctx.pool.take_notices(SESSION).is_empty());
    }
}

#[tokio::test]
async fn a_refusal_that_survives_the_strip_reaches_pi() {
    let rig = rig(Script::default_accounts(2)).await;
    let _ = first_turn(&rig).await;
    let refusal = json!({"error": {"message": "The encrypted content for item rs_1 could not be verified.",
        "type": "invalid_request_error", "param": null, "code": "invalid_encrypted_content"}});
    // The first try is refused by the sim's own check (garbage ciphertext); the stripped retry
    // by the scripted refusal.
    rig.sim
        .set_behaviors("acct-a", vec![Behavior::http_error(400, refusal)])
        .unwrap();
    let foreign = json!({"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAAA"});
    let (status, reply) = send(&rig, turn(&[foreign], "hi"), false).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("invalid_encrypted_content"), "{reply}");
    let stats = rig.sim.stats();
    assert_eq!(stats.account("acct-a").encrypted_content_refused, 1);
    assert_eq!(
        stats.account("acct-a").responses,
        3,
        "turn 1, refused, retried once"
    );
    assert_eq!(stats.account("acct-b").responses, 0);
}

/// A second proxy on the same accounts file, as another pi process would have.
async fn second_process(rig: &Rig) -> (Arc<Context>, Proxy) {
    let endpoints = Endpoints {
        backend: Url::parse(&rig.sim.backend_base()).unwrap(),
        auth: Url::parse(&rig.sim.issuer()).unwrap(),
    };
    let ctx = Arc::new(Context::new(endpoints, rig.store.clone()).unwrap());
    let proxy = Proxy::start(ctx.clone()).await.unwrap();
    (ctx, proxy)
}

#[tokio::test]
async fn a_session_continued_in_another_process_returns_to_its_account() {
    // acct-a's replies report it used, so a fresh choice never finds it untouched.
    let mut script = Script::default_accounts(2);
    script.accounts[0].usage = Usage::percent(20.0, 30.0);
    let rig = rig(script).await;
    let history = first_turn(&rig).await;
    rig.ctx.pool.flush().await;
    // acct-b now looks better to a fresh choice: untouched.
    rig.store
        .update(|file| {
            file.apply("local-1", |b| {
                b.usage.as_mut().unwrap().windows[0].used_percent = 0.0;
            });
            Ok(())
        })
        .unwrap();
    let (ctx, proxy) = second_process(&rig).await;
    let status = pi_dispatch::runtime::commands::status(&ctx, Some(SESSION), false)
        .await
        .unwrap();
    let shown = common::report(&status);
    assert!(
        shown.contains("This session continues on acct-a: it served this session before"),
        "{shown}"
    );
    let response = common::client()
        .post(format!("{}/codex/responses", proxy.base_url()))
        .bearer_auth(proxy.credential())
        .header("session_id", SESSION)
        .body(turn(&history, "again"))
        .send()
        .await
        .unwrap();
    let reply = response.text().await.unwrap();
    assert!(reply.contains("hello from acct-a"), "{reply}");
    assert_eq!(refused(&rig), 0);
    // A new session in that process takes the untouched account.
    let fresh = common::client()
        .post(format!("{}/codex/responses", proxy.base_url()))
        .bearer_auth(proxy.credential())
        .header("session_id", "a-new-one")
        .body(turn(&[], "hi"))
        .send()
        .await
        .unwrap();
    let fresh = fresh.text().await.unwrap();
    assert!(fresh.contains("hello from acct-b"), "{fresh}");
}

#[tokio::test]
async fn a_session_that_stays_put_adds_no_binding_write() {
    let rig = rig(Script::default_accounts(2)).await;
    let history = first_turn(&rig).await;
    rig.ctx.pool.flush().await;
    let bindings = rig.store.load().unwrap().sessions;
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].account_id, "local-0");
    for _ in 0..3 {
        let (_, reply) = send(&rig, turn(&history, "more"), false).await;
        assert!(reply.contains("hello from acct-a"));
    }
    rig.ctx.pool.flush().await;
    // Not even its time moved: no change was recorded for it.
    assert_eq!(rig.store.load().unwrap().sessions, bindings);
}
