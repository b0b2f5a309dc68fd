//! The accounts file parser: any bytes give a file or an error that names the file, never a
//! panic; a file that parses survives a write and a read unchanged.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pi_dispatch::store::parse;

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
});
