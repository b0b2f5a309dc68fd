//! The pi extension's own dialogs and command lines, in words.

/// The sentences the pi extension shows around its commands. Templates name their blanks in
/// braces (`{label}`), which the extension fills in; it composes no sentence of its own.
pub struct Ui {
    pub describe_status: &'static str,
    pub describe_use: &'static str,
    pub describe_login: &'static str,
    pub describe_remove: &'static str,
    pub describe_rename: &'static str,
    pub describe_settings: &'static str,
    pub describe_broken: &'static str,
    /// `{message}`: any problem the core reported.
    pub failed: &'static str,
    /// `{message}`.
    pub cannot_start: &'static str,
    pub refreshing_usage: &'static str,
    /// `{labels}`.
    pub use_usage: &'static str,
    pub use_title: &'static str,
    pub login_usage: &'static str,
    pub login_method_title: &'static str,
    pub login_method_browser: &'static str,
    pub login_method_device: &'static str,
    pub login_cancelled: &'static str,
    /// `{url}`.
    pub browser_opened: &'static str,
    /// `{url}`.
    pub browser_open_yourself: &'static str,
    /// `{notice}`.
    pub browser_note: &'static str,
    /// `{notice}`.
    pub browser_no_paste: &'static str,
    pub browser_waiting: &'static str,
    pub paste_title: &'static str,
    /// `{problem}`.
    pub paste_again_title: &'static str,
    pub paste_placeholder: &'static str,
    /// `{url}`, `{code}`.
    pub device_instructions: &'static str,
    pub device_waiting: &'static str,
    /// `{url}`, `{code}`.
    pub device_waiting_title: &'static str,
    pub device_cancel: &'static str,
    pub remove_usage: &'static str,
    pub remove_usage_line: &'static str,
    pub remove_title: &'static str,
    /// `{label}`.
    pub remove_question: &'static str,
    pub remove_detail: &'static str,
    pub remove_kept: &'static str,
    pub rename_usage: &'static str,
    pub rename_usage_line: &'static str,
    pub rename_title: &'static str,
    /// `{label}`.
    pub rename_question: &'static str,
    pub rename_kept: &'static str,
    pub no_accounts: &'static str,
    /// `{usage}`, `{labels}`.
    pub choose_usage: &'static str,
    pub settings_usage: &'static str,
    pub spend_title: &'static str,
    pub spend_on: &'static str,
    pub spend_off: &'static str,
}

pub const UI: Ui = Ui {
    describe_status: "Show every pooled account: usage windows, resets, and which serves this session",
    describe_use: "Pin an account for this session (until a rotation moves it off)",
    describe_login: "Add a ChatGPT account to the pool, or log one in again: /dispatch-login [label] [--browser|--device]",
    describe_remove: "Remove an account from the pool: /dispatch-remove [label]",
    describe_rename: "Give an account another label: /dispatch-rename <label> <new label>",
    describe_settings: "Show or change the pool's settings: /dispatch-settings [spend on|off] (paid requests)",
    describe_broken: "pi-dispatch is not working: shows why",
    failed: "pi-dispatch: {message}",
    cannot_start: "pi-dispatch could not start: {message}",
    refreshing_usage: "pi-dispatch: refreshing usage…",
    use_usage: "Usage: /dispatch-use <label>. Ready: {labels}",
    use_title: "Pin which account for this session?",
    login_usage: "pi-dispatch: usage: /dispatch-login [label] [--browser|--device]",
    login_method_title: "Log in a ChatGPT account with",
    login_method_browser: "Browser",
    login_method_device: "Device code",
    login_cancelled: "pi-dispatch: login cancelled; nothing was changed.",
    browser_opened: "pi-dispatch: sign in in the browser that just opened, or open this URL yourself:\n{url}",
    browser_open_yourself: "pi-dispatch: open this URL to sign in:\n{url}",
    browser_note: "Note: {notice}.",
    browser_no_paste: "pi-dispatch: {notice}, which print mode cannot take. Use /dispatch-login --device.",
    browser_waiting: "Waiting for the browser (up to 10 minutes)...",
    paste_title: "Paste the address the browser shows after signing in (Escape cancels the login)",
    paste_again_title: "{problem} (Escape cancels the login)",
    paste_placeholder: "http://localhost:1455/auth/callback?code=...&state=...",
    device_instructions: "pi-dispatch: on any device, open {url} and enter the code {code}",
    device_waiting: "Waiting for approval (up to 15 minutes)...",
    device_waiting_title: "Waiting for the code {code} at {url}",
    device_cancel: "Cancel login",
    remove_usage: "pi-dispatch: usage: /dispatch-remove [label]",
    remove_usage_line: "/dispatch-remove <label>",
    remove_title: "Remove which account?",
    remove_question: "Remove \"{label}\"?",
    remove_detail: "Its tokens are deleted from this machine. /dispatch-login adds it again.",
    remove_kept: "pi-dispatch: nothing was removed.",
    rename_usage: "pi-dispatch: usage: /dispatch-rename <label> <new label> (labels are one word)",
    rename_usage_line: "/dispatch-rename <label> <new label>",
    rename_title: "Rename which account?",
    rename_question: "New label for \"{label}\"",
    rename_kept: "pi-dispatch: nothing was renamed.",
    no_accounts: "pi-dispatch: no accounts yet. Add one with /dispatch-login.",
    choose_usage: "pi-dispatch: usage: {usage} (accounts: {labels})",
    settings_usage: "pi-dispatch: usage: /dispatch-settings [spend on|off]",
    spend_title: "Once every account's included quota is spent, may pi-dispatch use credits and usage-based plans (at your expense)?",
    spend_on: "Yes: spend on",
    spend_off: "No: spend off",
};
