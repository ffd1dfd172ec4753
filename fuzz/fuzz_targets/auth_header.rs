//! The `Authorization` header, as a request presents it: header-value bytes, the scheme and
//! credential parser, then for tokens the JOSE header, the unverified issuer lookup and HS256
//! verification with a configured secret. Properties: nothing panics; every refusal is a 401;
//! an API key that passes the parser has the key format.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use perfgate_server::auth::extract::{parse_header, Credential};
use perfgate_server::auth::jwt::JwtVerifier;
use perfgate_server::auth::keys::is_valid_format;
use perfgate_server::auth::oidc;
use perfgate_server::ServerConfig;

static JWT: LazyLock<JwtVerifier> = LazyLock::new(|| {
    let cfg = ServerConfig::new().jwt_secret("fuzz-secret-fuzz-secret-fuzz-secret-0123");
    JwtVerifier::from_config(&cfg)
        .expect("valid JWT configuration")
        .expect("JWT configured")
});

fuzz_target!(|data: &[u8]| {
    // What actix hands over: a header value, readable as a string only when it is visible ASCII.
    let Ok(value) = actix_web::http::header::HeaderValue::from_bytes(data) else {
        return;
    };
    let header = value.to_str().ok();
    match parse_header(header) {
        Ok(Credential::ApiKey(key)) => assert!(is_valid_format(&key), "{key:?}"),
        Ok(Credential::Jwt(token)) => {
            let _ = jsonwebtoken::decode_header(&token);
            assert!(oidc::provider_for(&[], &token).is_none());
            if let Err(e) = JWT.verify(&token) {
                assert_eq!(e.status.as_u16(), 401, "{}", e.message);
            }
        }
        Err(e) => assert_eq!(e.status.as_u16(), 401, "{}", e.message),
    }
});
