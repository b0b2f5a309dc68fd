//! Account-bound ciphertext, as the real backend's `encrypted_content`: only the account
//! that minted a reasoning or compaction item can use it again.
//!
//! The real content is encrypted with a key of the account. Here it is the standard base64
//! of `sim1.<item id>.<tag>`, where the tag is a SHA-256 over a secret drawn when the
//! simulator starts, the account id and the item id. So a test (or the core) cannot forge
//! it, another account cannot verify it, and two simulators do not accept each other's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jwt::random_bytes;

const PREFIX: &str = "sim1.";

/// The input item types that carry account-bound ciphertext (codex-rs `ResponseItem`:
/// `reasoning`, and `compaction` with its alias `compaction_summary`).
const BOUND_ITEM_TYPES: [&str; 3] = ["reasoning", "compaction", "compaction_summary"];

/// The simulator's secret behind every `encrypted_content` it mints.
pub(crate) struct ContentKey([u8; 32]);

impl ContentKey {
    pub fn random() -> ContentKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(&random_bytes(32));
        ContentKey(key)
    }

    /// The `encrypted_content` of item `item_id` minted by `account_id`.
    pub fn mint(&self, account_id: &str, item_id: &str) -> String {
        STANDARD.encode(format!(
            "{PREFIX}{item_id}.{}",
            self.tag(account_id, item_id)
        ))
    }

    /// Whether `account_id` minted `encrypted_content`; on failure, the item id the
    /// content names, when it can be read at all.
    fn verify(&self, account_id: &str, encrypted_content: &str) -> Result<(), Option<String>> {
        let decoded = STANDARD.decode(encrypted_content).map_err(|_| None)?;
        let text = String::from_utf8(decoded).map_err(|_| None)?;
        let (item_id, tag) = text
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.rsplit_once('.'))
            .ok_or(None)?;
        if tag == self.tag(account_id, item_id) {
            Ok(())
        } else {
            Err(Some(item_id.to_string()))
        }
    }

    /// The first item of the request's `input` whose ciphertext `account_id` did not mint,
    /// named by its `id`, else by the id inside the ciphertext, else `unknown`.
    pub fn first_foreign_item(&self, account_id: &str, body: &Value) -> Option<String> {
        let input = body.get("input")?.as_array()?;
        input.iter().find_map(|item| {
            let kind = item.get("type")?.as_str()?;
            if !BOUND_ITEM_TYPES.contains(&kind) {
                return None;
            }
            // An item without ciphertext has nothing bound to an account.
            let encrypted_content = item.get("encrypted_content")?.as_str()?;
            let embedded = self.verify(account_id, encrypted_content).err()?;
            let named = item.get("id").and_then(Value::as_str).map(str::to_string);
            Some(named.or(embedded).unwrap_or_else(|| "unknown".to_string()))
        })
    }

    fn tag(&self, account_id: &str, item_id: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(self.0);
        // Length-prefixed, so that no other (account, item) pair hashes the same bytes.
        hash.update((account_id.len() as u64).to_be_bytes());
        hash.update(account_id.as_bytes());
        hash.update(item_id.as_bytes());
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(items: Value) -> Value {
        json!({"model": "gpt-5.1-codex", "input": items})
    }

    #[test]
    fn only_the_minting_account_verifies() {
        let key = ContentKey::random();
        let content = key.mint("acct-a", "rs_1");
        let input = body(json!([
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": content},
        ]));
        assert_eq!(key.first_foreign_item("acct-a", &input), None);
        assert_eq!(
            key.first_foreign_item("acct-b", &input).as_deref(),
            Some("rs_1")
        );
        // Another simulator's key does not verify it either.
        assert!(
            ContentKey::random()
                .first_foreign_item("acct-a", &input)
                .is_some()
        );
    }

    #[test]
    fn compaction_items_and_garbage_are_checked_too() {
        let key = ContentKey::random();
        let compaction =
            json!({"type": "compaction", "encrypted_content": key.mint("acct-a", "cmp_1")});
        assert_eq!(
            key.first_foreign_item("acct-b", &body(json!([compaction])))
                .as_deref(),
            Some("cmp_1"),
            "no id field: the id inside the ciphertext names it"
        );
        let garbage = json!({"type": "compaction_summary", "encrypted_content": "gAAAA-not-ours"});
        assert_eq!(
            key.first_foreign_item("acct-a", &body(json!([garbage])))
                .as_deref(),
            Some("unknown")
        );
        let no_content = json!({"type": "reasoning", "id": "rs_2", "summary": []});
        assert_eq!(
            key.first_foreign_item("acct-a", &body(json!([no_content]))),
            None
        );
    }
}
