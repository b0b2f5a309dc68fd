//! The accounts file parser: any bytes give a file or an error that names the file, never a
//! panic; a file that parses survives a write and a read unchanged; and an error never quotes a
//! string value of the file (any of them could be a token).
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pi_dispatch::store::parse;
use serde_json::Value;

/// Marks every string value (not key) as a secret.
fn mark_secrets(value: &mut Value) {
    match value {
        Value::String(s) => *s = format!("SECRET{s}"),
        Value::Array(items) => items.iter_mut().for_each(mark_secrets),
        Value::Object(fields) => fields.values_mut().for_each(mark_secrets),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/agent/dispatch.json");
    match parse(path, data) {
        Ok(parsed) => {
            let bytes = serde_json::to_vec(&parsed.file).expect("a parsed file encodes");
            let again = parse(path, &bytes).expect("an encoded file parses");
            assert_eq!(again.file.accounts.len(), parsed.file.accounts.len());
        }
        Err(e) => assert!(e.to_string().contains("dispatch.json")),
    }
    if let Ok(mut value) = serde_json::from_slice::<Value>(data) {
        mark_secrets(&mut value);
        let marked = serde_json::to_vec(&value).expect("a value encodes");
        if let Err(e) = parse(path, &marked) {
            assert!(!e.chain().contains("SECRET"), "an error quotes a value");
        }
    }
});
