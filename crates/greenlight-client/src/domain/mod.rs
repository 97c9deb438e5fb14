//! Pure domain types: actions, statuses, votes, decisions and validated requests.
//! Nothing here knows about HTTP or Redis.

mod action;
mod binding;
mod request;
pub mod text;
mod window;

pub use action::{
    Action, ActionId, AlreadyDecided, DecidedBy, Decision, Escalation, Grant, InvalidActionId,
    Outcome, PolicySnapshot, Requester, StagePlan, Status, Vote, VoteKind, VoteRejected, rfc3339,
};
pub use binding::Binding;
pub use request::{
    ActionRequest, CallbackRules, Invalid, MAX_WINDOW_SECONDS, MIN_WINDOW_SECONDS, ValidRequest,
    WindowRequest, is_action_name,
};
pub use window::{Window, WindowEnd};
