//! The sentences of the extension's dialogs, handed over once.

use napi_derive::napi;

use crate::domain::text;

/// The sentences of the extension's dialogs and command lines (see `domain::text::Ui`).
#[napi(object)]
pub struct UiText {
    pub describe_status: String,
    pub describe_use: String,
    pub describe_login: String,
    pub describe_remove: String,
    pub describe_rename: String,
    pub describe_settings: String,
    pub describe_broken: String,
    pub failed: String,
    pub cannot_start: String,
    pub refreshing_usage: String,
    pub use_usage: String,
    pub use_title: String,
    pub login_usage: String,
    pub login_method_title: String,
    pub login_method_browser: String,
    pub login_method_device: String,
    pub login_cancelled: String,
    pub browser_opened: String,
    pub browser_open_yourself: String,
    pub browser_note: String,
    pub browser_no_paste: String,
    pub browser_waiting: String,
    pub paste_title: String,
    pub paste_again_title: String,
    pub paste_placeholder: String,
    pub device_instructions: String,
    pub device_waiting: String,
    pub device_waiting_title: String,
    pub device_cancel: String,
    pub remove_usage: String,
    pub remove_usage_line: String,
    pub remove_title: String,
    pub remove_question: String,
    pub remove_detail: String,
    pub remove_kept: String,
    pub rename_usage: String,
    pub rename_usage_line: String,
    pub rename_title: String,
    pub rename_question: String,
    pub rename_kept: String,
    pub no_accounts: String,
    pub choose_usage: String,
    pub settings_usage: String,
    pub spend_title: String,
    pub spend_on: String,
    pub spend_off: String,
}

impl From<&text::ui::Ui> for UiText {
    fn from(ui: &text::ui::Ui) -> Self {
        Self {
            describe_status: ui.describe_status.to_owned(),
            describe_use: ui.describe_use.to_owned(),
            describe_login: ui.describe_login.to_owned(),
            describe_remove: ui.describe_remove.to_owned(),
            describe_rename: ui.describe_rename.to_owned(),
            describe_settings: ui.describe_settings.to_owned(),
            describe_broken: ui.describe_broken.to_owned(),
            failed: ui.failed.to_owned(),
            cannot_start: ui.cannot_start.to_owned(),
            refreshing_usage: ui.refreshing_usage.to_owned(),
            use_usage: ui.use_usage.to_owned(),
            use_title: ui.use_title.to_owned(),
            login_usage: ui.login_usage.to_owned(),
            login_method_title: ui.login_method_title.to_owned(),
            login_method_browser: ui.login_method_browser.to_owned(),
            login_method_device: ui.login_method_device.to_owned(),
            login_cancelled: ui.login_cancelled.to_owned(),
            browser_opened: ui.browser_opened.to_owned(),
            browser_open_yourself: ui.browser_open_yourself.to_owned(),
            browser_note: ui.browser_note.to_owned(),
            browser_no_paste: ui.browser_no_paste.to_owned(),
            browser_waiting: ui.browser_waiting.to_owned(),
            paste_title: ui.paste_title.to_owned(),
            paste_again_title: ui.paste_again_title.to_owned(),
            paste_placeholder: ui.paste_placeholder.to_owned(),
            device_instructions: ui.device_instructions.to_owned(),
            device_waiting: ui.device_waiting.to_owned(),
            device_waiting_title: ui.device_waiting_title.to_owned(),
            device_cancel: ui.device_cancel.to_owned(),
            remove_usage: ui.remove_usage.to_owned(),
            remove_usage_line: ui.remove_usage_line.to_owned(),
            remove_title: ui.remove_title.to_owned(),
            remove_question: ui.remove_question.to_owned(),
            remove_detail: ui.remove_detail.to_owned(),
            remove_kept: ui.remove_kept.to_owned(),
            rename_usage: ui.rename_usage.to_owned(),
            rename_usage_line: ui.rename_usage_line.to_owned(),
            rename_title: ui.rename_title.to_owned(),
            rename_question: ui.rename_question.to_owned(),
            rename_kept: ui.rename_kept.to_owned(),
            no_accounts: ui.no_accounts.to_owned(),
            choose_usage: ui.choose_usage.to_owned(),
            settings_usage: ui.settings_usage.to_owned(),
            spend_title: ui.spend_title.to_owned(),
            spend_on: ui.spend_on.to_owned(),
            spend_off: ui.spend_off.to_owned(),
        }
    }
}

/// Every sentence the extension shows around its commands; templates name their blanks in
/// braces.
#[napi]
pub fn ui_text() -> UiText {
    UiText::from(&text::ui::UI)
}
