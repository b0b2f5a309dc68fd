//! What the extension's commands do, above the binding: the pool's status for a session,
//! pinning an account, and the pool's upkeep. The rules live here (an account that cannot
//! serve cannot be pinned), so the binding only converts.

use std::collections::HashMap;

use crate::domain::account::Settings;
use crate::domain::select::{self, Need, Reason};
use crate::domain::status::{AccountStatus, Choice, PoolStatus};
use crate::domain::text;
use crate::domain::usage::MAIN_FAMILY;
use crate::error::{Error, ErrorKind};
use crate::io::clock::now_ms;
use crate::runtime::context::Context;

/// The pool as `/dispatch-status` and the footer show it. With `refresh`, usage older than the
/// freshness period is fetched first (concurrently).
pub async fn status(
    ctx: &Context,
    session: Option<&str>,
    refresh: bool,
) -> Result<PoolStatus, Error> {
    let mut fetch_errors = HashMap::new();
    if refresh {
        for fetched in ctx.usage.refresh_stale().await? {
            if let Err(e) = fetched.result {
                fetch_errors.insert(fetched.account_id, e.chain());
            }
        }
    }
    let file = ctx.pool.snapshot()?;
    let now = now_ms();
    let seat = session.and_then(|s| ctx.pool.seat(s));
    let active = ctx
        .pool
        .choose(session, None, &file, now, |_| false)
        .map(|seated| Choice::new(&seated.account, seated.reason, seat.as_ref()));
    Ok(PoolStatus::build(
        ctx.store.path().display().to_string(),
        &file.accounts,
        active,
        fetch_errors,
        ctx.pool.last_write_error(),
        file.settings.clone(),
        now,
    ))
}

/// Pins the account labelled `label` for a session until a rotation moves it off. Refuses an
/// unknown label and an account that cannot serve now, saying why.
pub fn use_account(ctx: &Context, session: &str, label: &str) -> Result<AccountStatus, Error> {
    let file = ctx.pool.snapshot()?;
    let now = now_ms();
    let account = file.labelled(label)?;
    let spend_money = file.settings.spend_money;
    if !select::admits(account, &Need::main(spend_money), now) {
        let availability = select::availability(account, MAIN_FAMILY, now);
        let paid_by = select::paid_by(account, MAIN_FAMILY, now);
        return Err(Error::new(
            ErrorKind::Unavailable,
            text::cannot_pin(
                label,
                &text::report::standing(&availability, paid_by, spend_money),
            ),
        ));
    }
    ctx.pool.pin(session, &account.id);
    let choice = Choice::new(account, Reason::Pinned, ctx.pool.seat(session).as_ref());
    Ok(AccountStatus::of(account, Some(&choice), now))
}

/// The pool's settings and the file they are kept in.
pub fn settings(ctx: &Context) -> Result<(Settings, String), Error> {
    let file = ctx.pool.snapshot()?;
    Ok((
        file.settings.clone(),
        ctx.store.path().display().to_string(),
    ))
}

/// Allows or stops requests that cost money (see [`Settings::spend_money`]), for every pi
/// process sharing the file.
pub fn set_spend_money(ctx: &Context, on: bool) -> Result<(), Error> {
    ctx.store.update(|file| {
        file.settings.spend_money = on;
        Ok(())
    })
}
