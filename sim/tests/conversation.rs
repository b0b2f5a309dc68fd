//! Conversation state bound to the account that produced it: every answer carries a
//! reasoning item whose `encrypted_content` only the minting account accepts back.

mod common;

use common::{
    names, post_responses, post_responses_body, post_responses_with, request_body,
    responses_request, sse_events,
};
use dispatch_sim::{Behavior, EncryptedContentCheck, Refusal, Script, Simulator};
use serde_json::{Value, json};

async fn sim() -> Simulator {
    Simulator::start(Script::default_accounts(2))
        .await
        .expect("sim starts")
}

/// The items of `response.output_item.done` events, as pi keeps them.
fn done_items(events: &[(String, Value)]) -> Vec<Value> {
    events
        .iter()
        .filter(|(name, _)| name == "response.output_item.done")
        .map(|(_, data)| data["item"].clone())
        .collect()
}

/// Turn 2 of a conversation: turn 1's prompt, its output items replayed, a new prompt.
fn turn_two(turn_one_output: &[Value]) -> Value {
    let mut body = request_body();
    let mut input = body["input"].as_array().cloned().unwrap_or_default();
    input.extend(turn_one_output.iter().cloned());
    input.push(json!({"role": "user", "content": [{"type": "input_text", "text": "and now?"}]}));
    body["input"] = Value::Array(input);
    body
}

fn refused_body(item_id: &str, code: Value) -> Value {
    json!({"error": {
        "message": format!("The encrypted content for item {item_id} could not be verified. Reason: Encrypted content could not be decrypted or parsed."),
        "type": "invalid_request_error",
        "param": null,
        "code": code,
    }})
}

#[tokio::test]
async fn an_ok_answer_starts_with_a_reasoning_item_at_output_index_zero() {
    let sim = sim().await;
    let events = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(
        &names(&events)[..5],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
        ]
    );
    let added = &events[2].1;
    let done = &events[3].1;
    assert_eq!(added["output_index"], 0);
    assert_eq!(done["output_index"], 0);
    let reasoning = &done["item"];
    assert_eq!(reasoning["type"], "reasoning");
    assert_eq!(reasoning["summary"], json!([]));
    assert!(
        reasoning["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("rs_"))
    );
    assert!(
        reasoning["encrypted_content"]
            .as_str()
            .is_some_and(|c| c.len() > 40)
    );
    assert_eq!(&added["item"], reasoning, "added already names the item");

    // Everything about the message sits at output index 1.
    for (name, data) in &events[4..events.len() - 1] {
        assert_eq!(data["output_index"], 1, "{name}");
    }
    let completed = &events.last().expect("events").1["response"];
    assert_eq!(completed["output"][0], *reasoning);
    assert_eq!(completed["output"][1]["type"], "message");
    assert_eq!(
        completed["output"][1]["content"][0]["text"],
        "hello from acct-a"
    );
    assert!(
        completed["usage"]["output_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
}

#[tokio::test]
async fn every_answer_mints_its_own_reasoning_item() {
    let sim = sim().await;
    let first = done_items(&sse_events(post_responses(&sim, "acct-a").await).await);
    let second = done_items(&sse_events(post_responses(&sim, "acct-a").await).await);
    assert_ne!(first[0]["id"], second[0]["id"]);
    assert_ne!(
        first[0]["encrypted_content"],
        second[0]["encrypted_content"]
    );
}

#[tokio::test]
async fn a_reasoning_summary_streams_as_one_summary_part() {
    let sim = sim().await;
    sim.set_behaviors(
        "acct-a",
        vec![Behavior::ok("answer").with_reasoning_summary("Thinking it over")],
    )
    .expect("known account");
    let events = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(
        &names(&events)[2..8],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
        ]
    );
    assert_eq!(events[4].1["delta"], "Thinking it over");
    assert_eq!(events[4].1["summary_index"], 0);
    assert_eq!(
        events[7].1["item"]["summary"],
        json!([{"type": "summary_text", "text": "Thinking it over"}])
    );
}

#[tokio::test]
async fn big_and_cut_streams_carry_the_reasoning_item_too() {
    let sim = sim().await;
    sim.set_behaviors(
        "acct-a",
        vec![
            Behavior::Big { bytes: 100_000 },
            Behavior::CutAfterFirstDelta { text: None },
        ],
    )
    .expect("known account");
    let big = sse_events(post_responses(&sim, "acct-a").await).await;
    assert_eq!(big[3].0, "response.output_item.done");
    assert_eq!(big[3].1["item"]["type"], "reasoning");
    assert_eq!(big[4].1["output_index"], 1);
    let completed = &big.last().expect("events").1;
    assert_eq!(completed["response"]["output"][0], big[3].1["item"]);

    let mut cut = post_responses(&sim, "acct-a").await;
    let mut text = String::new();
    while let Ok(Some(chunk)) = cut.chunk().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let reasoning_done = text.find("\"type\":\"reasoning\"").expect("reasoning item");
    let delta = text.find("response.output_text.delta").expect("a delta");
    assert!(reasoning_done < delta);
}

#[tokio::test]
async fn turn_two_is_served_by_the_account_that_minted_turn_one_and_refused_by_another() {
    let sim = sim().await;
    // acct-b's queue shows whether a refused request took a behavior.
    sim.set_behaviors("acct-b", vec![Behavior::ok("first behavior of acct-b")])
        .expect("known account");
    let turn_one = done_items(&sse_events(post_responses(&sim, "acct-a").await).await);
    let reasoning_id = turn_one[0]["id"].as_str().expect("an id").to_string();
    let body = turn_two(&turn_one);

    let same = post_responses_body(&sim, "acct-a", &body).await;
    assert_eq!(same.status(), 200);
    assert_eq!(done_items(&sse_events(same).await)[0]["type"], "reasoning");

    let other = post_responses_body(&sim, "acct-b", &body).await;
    assert_eq!(other.status(), 400);
    assert!(other.headers().get("x-codex-plan-type").is_some());
    let refusal: Value = other.json().await.expect("json body");
    assert_eq!(
        refusal,
        refused_body(&reasoning_id, json!("invalid_encrypted_content"))
    );

    let stats = sim.stats();
    let b = stats.account("acct-b");
    assert_eq!(b.encrypted_content_refused, 1);
    assert_eq!(b.served, 0);
    assert!(b.behaviors.is_empty());
    assert_eq!(stats.account("acct-a").encrypted_content_refused, 0);
    let logged = stats.requests.last().expect("logged");
    assert_eq!(logged.refusal, Some(Refusal::InvalidEncryptedContent));
    assert_eq!(logged.behavior, None);
    assert_eq!(logged.status, 400);

    // The refusal took nothing from acct-b's queue; a fresh conversation gets it.
    let fresh = sse_events(post_responses(&sim, "acct-b").await).await;
    assert_eq!(
        done_items(&fresh)[1]["content"][0]["text"],
        "first behavior of acct-b"
    );

    // Some accounts answer the same refusal with `code: null`.
    sim.set_encrypted_content_check(
        "acct-b",
        EncryptedContentCheck {
            verify: true,
            null_code: true,
        },
    )
    .expect("known account");
    let other = post_responses_body(&sim, "acct-b", &body).await;
    assert_eq!(other.status(), 400);
    let refusal: Value = other.json().await.expect("json body");
    assert_eq!(refusal, refused_body(&reasoning_id, Value::Null));
}

#[tokio::test]
async fn zstd_bodies_are_checked_too() {
    let sim = sim().await;
    let turn_one = done_items(&sse_events(post_responses(&sim, "acct-a").await).await);
    let json = serde_json::to_vec(&turn_two(&turn_one)).expect("serializes");
    let compressed =
        ruzstd::encoding::compress_to_vec(&json[..], ruzstd::encoding::CompressionLevel::Fastest);
    let send = |account: &'static str| {
        let token = sim.tokens(account).expect("scripted account").access;
        responses_request(&sim, account, &token)
            .header("content-type", "application/json")
            .header("content-encoding", "zstd")
            .body(compressed.clone())
            .send()
    };
    assert_eq!(send("acct-a").await.expect("sent").status(), 200);
    let refused = send("acct-b").await.expect("sent");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_encrypted_content");
}

#[tokio::test]
async fn compaction_items_are_bound_to_their_account() {
    let sim = sim().await;
    let content = sim
        .mint_encrypted_content("acct-a", "cmp_sim_1")
        .expect("known account");
    let mut body = request_body();
    body["input"].as_array_mut().expect("input").insert(
        0,
        json!({"type": "compaction", "id": "cmp_sim_1", "encrypted_content": content}),
    );
    assert_eq!(
        post_responses_body(&sim, "acct-a", &body).await.status(),
        200
    );
    let refused = post_responses_body(&sim, "acct-b", &body).await;
    assert_eq!(refused.status(), 400);
    let refusal: Value = refused.json().await.expect("json");
    assert_eq!(
        refusal,
        refused_body("cmp_sim_1", json!("invalid_encrypted_content"))
    );

    // The codex-rs alias, without an id field: the id inside the ciphertext names it.
    body["input"][0] = json!({"type": "compaction_summary", "encrypted_content": content});
    let refused = post_responses_body(&sim, "acct-b", &body).await;
    let refusal: Value = refused.json().await.expect("json");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("item cmp_sim_1 "))
    );
}

#[tokio::test]
async fn garbage_ciphertext_is_refused_even_by_the_named_account() {
    let sim = sim().await;
    let mut body = request_body();
    body["input"].as_array_mut().expect("input").push(json!({
        "type": "reasoning", "id": "rs_forged", "summary": [], "encrypted_content": "gAAAAABforged=="
    }));
    let refused = post_responses_body(&sim, "acct-a", &body).await;
    assert_eq!(refused.status(), 400);
    let refusal: Value = refused.json().await.expect("json");
    assert_eq!(
        refusal,
        refused_body("rs_forged", json!("invalid_encrypted_content"))
    );

    // A reasoning item without ciphertext carries nothing bound to an account.
    body["input"][1] = json!({"type": "reasoning", "id": "rs_plain", "summary": []});
    assert_eq!(
        post_responses_body(&sim, "acct-a", &body).await.status(),
        200
    );
}

#[tokio::test]
async fn the_check_can_be_switched_off_per_account() {
    let sim = sim().await;
    let turn_one = done_items(&sse_events(post_responses(&sim, "acct-a").await).await);
    sim.set_encrypted_content_check(
        "acct-b",
        EncryptedContentCheck {
            verify: false,
            null_code: false,
        },
    )
    .expect("known account");
    let response = post_responses_body(&sim, "acct-b", &turn_two(&turn_one)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sim.stats().account("acct-b").encrypted_content_refused, 0);
}

#[tokio::test]
async fn auth_comes_before_the_ciphertext_check() {
    let sim = sim().await;
    let turn_one = done_items(&sse_events(post_responses(&sim, "acct-a").await).await);
    let a_token = sim.tokens("acct-a").expect("acct-a").access;
    let response = responses_request(&sim, "acct-b", &a_token)
        .json(&turn_two(&turn_one))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 401);
    let stats = sim.stats();
    assert_eq!(stats.account("acct-b").unauthorized, 1);
    assert_eq!(stats.account("acct-b").encrypted_content_refused, 0);
    // And a plain request still works with the right token (nothing else changed).
    assert_eq!(
        post_responses_with(&sim, "acct-b", &sim.tokens("acct-b").expect("b").access)
            .await
            .status(),
        200
    );
}
