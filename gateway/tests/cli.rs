//! The `parley-gateway` binary's own commands: `token` mints what the
//! gateway accepts and needs a secret; the one-process chat's old spelling
//! is answered with where it is.

use std::process::{Command, Output};

use parley_gateway::auth::Auth;

const SECRET: &str = "cli-test-secret";

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_parley-gateway"))
        .args(args)
        .env_remove("PARLEY_JWT_SECRET")
        .output()
        .expect("run parley-gateway")
}

#[test]
fn token_subcommand_mints_a_token_the_gateway_accepts() {
    let out = gateway(&["token", "frank", "--ttl", "5m", "--jwt-secret", SECRET]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(Auth::new(SECRET).verify(&token).expect("a token the gateway accepts"), "frank");
    assert!(Auth::new("another-secret").verify(&token).is_err());

    let out = gateway(&["token", "frank"]);
    assert!(!out.status.success(), "a secret is required outside standalone");
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret is required"));
}

#[test]
fn the_one_process_chat_is_named_where_it_lives() {
    let out = gateway(&["standalone", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("parley-standalone") && stderr.contains("scripts/chat.sh"), "{stderr}");
}
