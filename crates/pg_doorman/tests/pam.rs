//! PAM logins (`auth_pam_service`) through the real Linux-PAM stack: a service file in
//! /etc/pam.d whose `auth` line is pam_exec running a script that checks the user and the
//! password PAM hands it (`expose_authtok`). The right password logs in, a wrong one and a
//! user the script does not know get 28P01. Needs root (it writes /etc/pam.d), as CI runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::err_expect
)]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

/// A PAM service file, removed on drop.
struct Service(std::path::PathBuf);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn pam_checks_the_password() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test writes /etc/pam.d and must run as root"
    );
    let pg = cluster(PgAuth::Scram);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("check.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\npw=$(tr -d '\\000')\n[ \"$PAM_USER\" = pamuser ] && [ \"$pw\" = pam_secret ]\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = format!("pg_doorman_test_{}", std::process::id());
    let service = Service(std::path::Path::new("/etc/pam.d").join(&name));
    std::fs::write(
        &service.0,
        format!(
            "auth required pam_exec.so expose_authtok quiet {}\naccount required pam_permit.so\n",
            script.display()
        ),
    )
    .unwrap();
    let users = format!(
        "      - username: pamuser\n        password: \"\"\n        auth_pam_service: {name}\n        server_username: app\n        server_password: app_pw\n        pool_size: 2\n      - username: stranger\n        password: \"\"\n        auth_pam_service: {name}\n        server_username: app\n        server_password: app_pw\n        pool_size: 2\n"
    );
    let d = Doorman::start(
        binary(),
        &format!("{}{users}", yaml(&pg, &PoolSpec::default())),
    );
    let c = connect(&d.conn_str("pamuser", "pam_secret", "appdb"))
        .await
        .unwrap();
    assert_eq!(one(&c, "SELECT current_user").await, "app");
    for (user, pw) in [("pamuser", "wrong"), ("stranger", "pam_secret")] {
        let e = connect(&d.conn_str(user, pw, "appdb"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{user}/{pw} must be refused"));
        assert_eq!(sqlstate(&e), "28P01", "{e}");
    }
    assert!(
        d.log_text().contains("PAM login as \"pamuser\""),
        "{}",
        d.log_text()
    );
}
