//! The secret-list cursor (`?cursor=` / `cursor` in list_secrets): a client
//! hands back whatever it likes. Decoding must answer an error, never panic,
//! and a cursor the server issued must decode to what it encoded.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey::vault::secrets::decode_cursor;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    /// Raw text as a client would send it.
    Raw(&'a str),
    /// Arbitrary bytes behind valid base64, so the JSON layer is reached.
    Json(&'a [u8]),
    /// A cursor as the server issues one (`encode_cursor`: base64 of `[name, id]`).
    Issued { name: String, id: String },
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Raw(c) => {
        let _ = decode_cursor(c);
    }
    Input::Json(bytes) => {
        let _ = decode_cursor(&URL_SAFE_NO_PAD.encode(bytes));
    }
    Input::Issued { name, id } => {
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&(&name, &id)).expect("serialisable"));
        let (n, i) = decode_cursor(&c).expect("an issued cursor decodes");
        assert_eq!((n, i), (name, id));
    }
});
