//! Runtime control of the log filter (admin `SET log_level`, `SHOW LOG_LEVEL`). The binary
//! installs a setter once at start; the library only calls it.

use parking_lot::Mutex;
use std::sync::OnceLock;

type Setter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct Control {
    set: Setter,
    current: Mutex<String>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Installs the filter setter (env-filter syntax, e.g. `warn,pg_doorman::pool=debug`) with the
/// filter in force at start.
pub fn install(initial: &str, set: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = CONTROL.set(Control {
        set: Box::new(set),
        current: Mutex::new(initial.to_string()),
    });
}

/// The filter in force ("info" when logging was set up without control, as in tests).
pub fn current() -> String {
    CONTROL
        .get()
        .map(|c| c.current.lock().clone())
        .unwrap_or_else(|| "info".into())
}

/// Replaces the filter at once (not persisted). Errors: the filter does not parse, or no
/// control is installed.
pub fn set(filter: &str) -> Result<(), String> {
    let c = CONTROL
        .get()
        .ok_or_else(|| "log level control is not available".to_string())?;
    (c.set)(filter)?;
    *c.current.lock() = filter.to_string();
    Ok(())
}
