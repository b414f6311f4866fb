//! PAM logins (`auth_pam_service` of a user): the client's password, asked in clear text, is
//! checked by the system's PAM stack for that service (`/etc/pam.d/<service>`):
//! pam_authenticate, then pam_acct_mgmt, as PgDoorman and PostgreSQL's `pam` method do.
//!
//! A small FFI to `libpam.so.0` (linked by its file name, so no -dev package is needed to
//! build; spec/DEPS.md explains why not pam-client: its bindgen step needs libclang). PAM calls
//! block (a failed attempt waits its fail delay, about 2 s): call [`authenticate`] from a
//! blocking thread. Besides app/fds.rs, the only `unsafe` of the crate.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[link(name = "libpam.so.0", kind = "dylib", modifiers = "+verbatim")]
unsafe extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut c_void, errnum: c_int) -> *const c_char;
}

/// What the conversation answers: the password to hidden prompts, the user name to visible
/// ones (a module that asks for it again), nothing to informational messages.
struct Answers {
    user: CString,
    password: CString,
}

/// PAM's conversation callback. Responses are allocated with calloc/strdup, as PAM frees them
/// with free().
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: appdata is the `Answers` that `authenticate` passed in PamConv and keeps alive
    // until pam_end.
    let answers = unsafe { &*(appdata as *const Answers) };
    // SAFETY: calloc of n zeroed PamResponse structs (plain C data); checked for NULL below.
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes `msg` as an array of n pointers to messages.
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            continue;
        }
        // SAFETY: m points to a PamMessage PAM owns for the duration of this call.
        let style = unsafe { (*m).msg_style };
        let text = match style {
            PAM_PROMPT_ECHO_OFF => Some(&answers.password),
            PAM_PROMPT_ECHO_ON => Some(&answers.user),
            _ => None,
        };
        if let Some(t) = text {
            // SAFETY: strdup of a valid NUL-terminated string; `out` has n slots, i < n.
            unsafe { (*out.add(i)).resp = libc::strdup(t.as_ptr()) };
        }
    }
    // SAFETY: resp is the out-pointer PAM gave us; PAM takes ownership of `out`.
    unsafe { *resp = out };
    PAM_SUCCESS
}

/// Checks `password` for `user` with PAM service `service`. Err is PAM's reason, for the log.
/// Blocks.
pub fn authenticate(service: &str, user: &str, password: &str) -> Result<(), String> {
    let (Ok(svc), Ok(user_c), Ok(pw)) = (
        CString::new(service),
        CString::new(user),
        CString::new(password),
    ) else {
        return Err("a NUL byte in the service, user name or password".into());
    };
    let answers = Box::new(Answers {
        user: user_c.clone(),
        password: pw,
    });
    let conv = PamConv {
        conv: converse,
        appdata_ptr: &*answers as *const Answers as *mut c_void,
    };
    let mut h: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings and a conversation that outlive the handle (all
    // live until the end of this function, after pam_end).
    let rc = unsafe { pam_start(svc.as_ptr(), user_c.as_ptr(), &conv, &mut h) };
    if rc != PAM_SUCCESS || h.is_null() {
        return Err(format!("pam_start failed ({rc})"));
    }
    let why = |rc: c_int| -> String {
        // SAFETY: h is a live handle; pam_strerror returns a static string or NULL.
        let s = unsafe { pam_strerror(h, rc) };
        if s.is_null() {
            format!("PAM error {rc}")
        } else {
            // SAFETY: non-NULL, NUL-terminated, static.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        }
    };
    // SAFETY: h is the live handle from pam_start.
    let mut rc = unsafe { pam_authenticate(h, 0) };
    let mut result = if rc == PAM_SUCCESS {
        Ok(())
    } else {
        Err(why(rc))
    };
    if result.is_ok() {
        // SAFETY: as above.
        rc = unsafe { pam_acct_mgmt(h, 0) };
        if rc != PAM_SUCCESS {
            result = Err(format!("account: {}", why(rc)));
        }
    }
    // SAFETY: ends the handle once; nothing uses it afterwards.
    unsafe { pam_end(h, rc) };
    drop(answers);
    result
}
