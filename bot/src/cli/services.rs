//! `bump`, `scale`, `restart` and `rollback` from the CLI, routed by ops-core exactly as in
//! Discord ([`Ops::route_change`]): a change that may run now runs and its rollout is
//! followed; one that needs an approval (scaling to 0, a rollback, any change to a service of
//! an `always_requires_approval` layer) or touches sprocket-ops' own services is refused
//! unless `--break-glass "<reason>"` is given, which runs the approval action without an
//! approval, audited as `break_glass.<action>`. Refusals are audited as denied.

use std::time::Instant;

use ops_core::audit::{Actor, Outcome};
use ops_core::services::{ApprovalPlan, ChangeError, Route, ServiceChange};
use ops_core::Ops;

use super::{break_glass_action, break_glass_reason, change};
use crate::exit::Exit;

/// Runs `change` of `service` as ops-core routes it (see the module docs).
pub(super) async fn run(
    ops: &Ops,
    service: &str,
    what: &ServiceChange,
    break_glass: &Option<String>,
) -> Result<(), Exit> {
    let started = Instant::now();
    let command = what.command();
    let record = |outcome: Outcome, detail: String, error_id: Option<String>| async move {
        ops.record(
            &Actor::cli_from_env(),
            command,
            &serde_json::json!({ "service": service }),
            outcome,
            Some(detail),
            error_id,
            started,
        )
        .await;
    };
    match ops.route_change(service, what).await {
        Ok(Route::Direct(d)) => {
            let name = d.name.clone();
            match what {
                ServiceChange::Bump(tag) => {
                    let params = serde_json::json!({ "service": name, "tag": tag });
                    change(ops, command, params, || ops.bump(&name, tag)).await
                }
                ServiceChange::Scale(n) => {
                    let params = serde_json::json!({ "service": name, "replicas": n });
                    change(ops, command, params, || ops.scale(&name, *n)).await
                }
                ServiceChange::Restart => {
                    let params = serde_json::json!({ "service": name });
                    change(ops, command, params, || ops.restart(&name)).await
                }
                ServiceChange::Rollback => Err(Exit::new(
                    1,
                    format!("refused: a rollback of `{name}` needs an approval"),
                )),
            }
        }
        Ok(Route::Approval(plan)) => match break_glass_reason(break_glass, &this(&plan)) {
            Ok(reason) => unapproved(ops, plan, reason).await,
            Err(e) => {
                record(Outcome::Denied, e.message.clone(), None).await;
                Err(e)
            }
        },
        Ok(Route::BreakGlassOnly { reason, plan }) => {
            if break_glass.is_none() {
                record(Outcome::Denied, reason.clone(), None).await;
                return Err(Exit::new(Exit::USAGE, reason));
            }
            let plan = plan.map_err(|e| Exit::new(1, e.to_string()))?;
            let reason = break_glass_reason(break_glass, &this(&plan))?;
            eprintln!(
                "break glass: `{}` is one of sprocket-ops' own services; changing it anyway, reason recorded",
                service
            );
            unapproved(ops, plan, reason).await
        }
        Err(ChangeError::Refused(m)) => {
            record(Outcome::Denied, m.clone(), None).await;
            Err(Exit::new(1, m))
        }
        Err(ChangeError::Failed(e)) => {
            record(Outcome::Error, e.summary.clone(), Some(e.error_id.clone())).await;
            Err(Exit::new(1, e.to_string()))
        }
    }
}

/// "this change (…)", for the refusal text.
fn this(plan: &ApprovalPlan) -> String {
    format!("this change ({}, action `{}`)", plan.summary, plan.action)
}

/// The plan's action without an approval, its parameters carrying the reason.
async fn unapproved(ops: &Ops, plan: ApprovalPlan, reason: String) -> Result<(), Exit> {
    let mut params = plan.params;
    if let Some(o) = params.as_object_mut() {
        o.insert("break_glass".into(), serde_json::Value::String(reason));
    }
    break_glass_action(ops, &plan.action, params).await
}
