//! Derivation and verification of credentials.

use super::*;

#[test]
fn a_caller_verifies_as_itself_and_its_key_works_nowhere_else() {
    let log = Credential::derive("K", "LogService", &["GradingService"]);
    let grading = Credential::derive("K", "GradingService", &[]);
    let portal = Credential::derive("K", "Portal", &[]);
    let bearer = log.bearer_to("GradingService").unwrap();

    assert_eq!(grading.verify(bearer.as_bytes()), Some(Caller("LogService".into())));
    assert_eq!(portal.verify(bearer.as_bytes()), None, "a key for grading opens no other service");
    let forged = bearer.replacen("LogService", "Portal", 1);
    assert_eq!(grading.verify(forged.as_bytes()), None, "a key names its caller");
    assert_eq!(grading.verify(b"K"), None, "K opens only processes started with it");
}

#[test]
fn only_the_registry_and_the_operator_verify_as_themselves() {
    let registry = Credential::derive("K", REGISTRY, &[]);
    let grading = Credential::derive("K", "GradingService", &[]);

    let patch = registry.registry_bearer_to("GradingService");

    assert_eq!(grading.verify(patch.as_bytes()), Some(Caller(REGISTRY.into())));
    assert_eq!(grading.verify(operator_bearer("K", "GradingService").as_bytes()), Some(Caller(OPERATOR.into())));
    assert_eq!(grading.verify(operator_bearer("other", "GradingService").as_bytes()), None);
}

#[test]
fn a_credential_survives_the_environment_and_keeps_its_keys_out_of_debug_output() {
    let log = Credential::derive("K", "LogService", &["GradingService"]);

    let parsed = Credential::parse(&log.render()).unwrap();

    assert!(parsed == log);
    let debug = format!("{log:?}");
    assert!(!debug.contains(&hex::encode(log.root)), "{debug}");
    assert!(Credential::parse("{\"name\":\"x\"}").is_err());
}

#[test]
fn the_operators_key_is_the_one_docs_protocol_computes_with_openssl() {
    assert_eq!(
        operator_bearer("abc", "GradingService"),
        "Operator:0d95e4cfcb65fcc25628aa6b98e94cf6fa61caaf6876900e38c897ed872e38b8"
    );
}
